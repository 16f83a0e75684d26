"""Generate ``fr_pii.jsonl``: labelled French sentences for the guardrail benchmark and tests.

Run ``python tests/data/make_fr_pii.py`` to regenerate (seeded: the output is stable). Each line is
``{"id", "text", "spans": [{"type", "start", "end", "value"}], "template"}`` with character offsets.
Identifiers carry valid check digits (NIR key, IBAN mod-97, SIREN/SIRET Luhn, card Luhn), so that a
validating recogniser can find them; the templates were written by hand to vary how French text
introduces each kind of data (forms, e-mails, letters, chat messages, call-centre notes). About one
sentence in eight has no personal data at all but looks like it might (amounts, dates, references),
to measure false positives.

Given names are drawn half from common names and half from rarer ones that the rule-based name
recogniser's word list does not contain, so that the benchmark shows what rules alone miss.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("fr_pii.jsonl")
rng = random.Random(20260401)

COMMON_FIRST = """Marie Jean Pierre Nathalie Isabelle Philippe Sophie Nicolas Camille Julien Céline Thomas
    Émilie Laurent Claire Antoine Hélène François Julie Mathieu""".split()
RARE_FIRST = """Anatole Bérénice Capucine Gaspard Honorine Isaure Léandre Maëlys Nolwenn Ophélie Perrine
    Quitterie Romane Soizic Tanguy Ulysse Violaine Wandrille Zélie Enguerrand Firmin Gwenaëlle Hortense
    Joachim
    Marius Octave Pacôme Timothée Aminata Mamadou Yanis Kenza Ilyès Rayane Malo Inaya""".split()
LAST = (
    """Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit|Durand|Leroy|Moreau|Simon|Laurent|Lefebvre|Michel|
    Garcia|David|Bertrand|Roux|Vincent|Fournier|Morel|Girard|André|Lefèvre|Mercier|Dupont|Lambert|Bonnet|
    François|Martinez|Le Goff|Kerjean|Nguyen|Traoré|Benali|Haddad|Da Silva|Rousseau|Blanchard|Guérin|Fabre|
    Chevalier|Gauthier|Perrin|Masson|Marchand|Duval|Denis|Lemaire|Brun""".replace("\n", "")
    .replace("    ", "")
    .split("|")
)
CITIES = [("75011", "Paris"), ("69003", "Lyon"), ("13008", "Marseille"), ("31000", "Toulouse"),
          ("44000", "Nantes"), ("67000", "Strasbourg"), ("33000", "Bordeaux"), ("59000", "Lille"),
          ("35000", "Rennes"), ("29200", "Brest"), ("63000", "Clermont-Ferrand"), ("06000", "Nice"),
          ("21000", "Dijon"), ("37000", "Tours"), ("80000", "Amiens"), ("20000", "Ajaccio"),
          ("97400", "Saint-Denis"), ("64100", "Bayonne"), ("51100", "Reims"),
          ("87000", "Limoges")]  # fmt: skip
STREET_TYPES = ["rue", "avenue", "boulevard", "place", "allée", "chemin", "impasse", "quai", "route"]
STREET_NAMES = ["de la République", "Victor Hugo", "des Lilas", "Jean Jaurès", "du Général de Gaulle",
                "Pasteur", "des Acacias", "de la Gare", "Gambetta", "du Moulin", "des Écoles",
                "Saint-Michel", "de Verdun", "Émile Zola", "des Tilleuls", "du Port", "Voltaire",
                "de la Liberté", "des Roses", "Sainte-Catherine"]  # fmt: skip
DOMAINS = ["orange.fr", "free.fr", "gmail.com", "laposte.net", "wanadoo.fr", "mairie-rennes.fr",
           "chu-lyon.fr", "entreprise.fr", "yahoo.fr", "sfr.fr"]  # fmt: skip
MONTHS = "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split()
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"


def luhn_digit(digits: str) -> str:
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def first_name() -> str:
    return rng.choice(COMMON_FIRST if rng.random() < 0.5 else RARE_FIRST)


def person() -> str:
    last = rng.choice(LAST)
    return f"{first_name()} {last.upper() if rng.random() < 0.2 else last}"


def phone() -> str:
    first = rng.choice(["01", "02", "03", "04", "05", "06", "07", "09"])
    groups = [first] + [f"{rng.randrange(100):02d}" for _ in range(4)]
    style = rng.randrange(6)
    if style == 0:
        return " ".join(groups)
    if style == 1:
        return ".".join(groups)
    if style == 2:
        return "".join(groups)
    if style == 3:
        return "+33 " + groups[0][1] + " " + " ".join(groups[1:])
    if style == 4:
        return "+33 (0)" + groups[0][1] + " " + " ".join(groups[1:])
    return "-".join(groups)


def nir() -> str:
    sex = rng.choice("12")
    year, month = f"{rng.randrange(40, 100):02d}", f"{rng.randrange(1, 13):02d}"
    dept = rng.choice([f"{rng.randrange(1, 96):02d}", "2A", "2B"])
    commune, order = f"{rng.randrange(1, 990):03d}", f"{rng.randrange(1, 999):03d}"
    body = sex + year + month + dept + commune + order
    numeric = body.replace("2A", "19") if dept == "2A" else body.replace("2B", "18") if dept == "2B" else body
    key = f"{97 - int(numeric) % 97:02d}"
    if rng.random() < 0.5:
        return f"{sex} {year} {month} {dept} {commune} {order} {key}"
    return body + key


def iban() -> str:
    bank, branch = f"{rng.randrange(10000, 99999)}", f"{rng.randrange(10000, 99999)}"
    account = f"{rng.randrange(10**10, 10**11)}"
    rib = f"{97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97:02d}"
    bban = bank + branch + account + rib
    check = 98 - int(bban + "152700") % 97  # F=15, R=27, then 00
    value = f"FR{check:02d}{bban}"
    if rng.random() < 0.7:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def siren() -> str:
    body = f"{rng.randrange(10**7, 10**8)}"
    return body + luhn_digit(body)


def siret(spaced: bool | None = None) -> str:
    base = siren() + f"{rng.randrange(1, 9999):04d}"
    value = base + luhn_digit(base)
    spaced = rng.random() < 0.5 if spaced is None else spaced
    return f"{value[:3]} {value[3:6]} {value[6:9]} {value[9:]}" if spaced else value


def card() -> str:
    prefix = rng.choice(["4", "51", "53", "55", "4970"])
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(15 - len(prefix)))
    value = body + luhn_digit(body)
    return " ".join(value[i : i + 4] for i in range(0, 16, 4)) if rng.random() < 0.7 else value


def email() -> str:
    first = first_name().lower().replace("é", "e").replace("ë", "e").replace("è", "e").replace("ï", "i")
    last = rng.choice(LAST).lower().replace(" ", "").replace("è", "e").replace("é", "e")
    sep = rng.choice([".", "_", "", "-"])
    return f"{first}{sep}{last}{rng.choice(['', str(rng.randrange(1, 99))])}@{rng.choice(DOMAINS)}"


def address() -> str:
    number = f"{rng.randrange(1, 200)}{rng.choice(['', '', '', ' bis', ' ter'])}"
    street = f"{number} {rng.choice(STREET_TYPES)} {rng.choice(STREET_NAMES)}"
    postcode, city = rng.choice(CITIES)
    return street if rng.random() < 0.25 else f"{street}, {postcode} {city}"


def city() -> str:
    return rng.choice(CITIES)[1]


def birth_date() -> str:
    day, month, year = rng.randrange(1, 29), rng.randrange(1, 13), rng.randrange(1940, 2006)
    style = rng.randrange(3)
    if style == 0:
        return f"{day:02d}/{month:02d}/{year}"
    if style == 1:
        return f"{day} {MONTHS[month - 1]} {year}"
    return f"{year}-{month:02d}-{day:02d}"


def plate() -> str:
    letters = lambda: "".join(rng.choice(PLATE_LETTERS) for _ in range(2))  # noqa: E731
    return f"{letters()}-{rng.randrange(1, 999):03d}-{letters()}"


def passport() -> str:
    letters = rng.choice(PLATE_LETTERS) + rng.choice(PLATE_LETTERS)
    return f"{rng.randrange(10, 99)}{letters}{rng.randrange(10000, 99999)}"


def id_card() -> str:
    chars = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    value = "".join(rng.choice(chars) for _ in range(8))
    return value + str(rng.randrange(10))


FILL = {
    "PERSON": person, "PHONE_NUMBER": phone, "FR_NIR": nir, "IBAN_CODE": iban, "FR_SIREN": siren,
    "FR_SIRET": siret, "CREDIT_CARD": card, "EMAIL_ADDRESS": email, "ADDRESS": address,
    "LOCATION": city, "DATE_OF_BIRTH": birth_date, "LICENCE_PLATE": plate, "FR_PASSPORT": passport,
    "FR_ID_CARD": id_card,
}  # fmt: skip

TEMPLATES = [
    "Bonjour, je m'appelle {PERSON} et vous pouvez me joindre au {PHONE_NUMBER}.",
    "Mon numéro de sécurité sociale est le {FR_NIR}, merci de mettre à jour mon dossier.",
    "Veuillez effectuer le virement sur l'IBAN {IBAN_CODE} avant la fin du mois.",
    "La société est immatriculée sous le SIRET {FR_SIRET} au registre du commerce.",
    "Notre entreprise (SIREN {FR_SIREN}) a déposé ses comptes en mars.",
    "Le client {PERSON} habite au {ADDRESS} depuis trois ans.",
    "Pour toute question, écrivez à {EMAIL_ADDRESS} ou appelez le {PHONE_NUMBER}.",
    "Mme {PERSON} a signalé un débit inconnu sur sa carte {CREDIT_CARD}.",
    "Patient : {PERSON}, né le {DATE_OF_BIRTH}, NIR {FR_NIR}.",
    "Le véhicule immatriculé {LICENCE_PLATE} est stationné devant le {ADDRESS}.",
    "J'ai perdu mon passeport n° {FR_PASSPORT} lors de mon voyage.",
    "Numéro de carte d'identité : {FR_ID_CARD}, délivrée à {LOCATION}.",
    "Merci de contacter M. {PERSON} au {PHONE_NUMBER} pour organiser la livraison.",
    "Cordialement,\n{PERSON}\n{ADDRESS}\nTél. : {PHONE_NUMBER}",
    "Je soussigné {PERSON}, demeurant {ADDRESS}, certifie sur l'honneur l'exactitude des informations.",
    "Coordonnées bancaires du fournisseur : IBAN {IBAN_CODE}, SIRET {FR_SIRET}.",
    "Date de naissance : {DATE_OF_BIRTH}",
    "Elle est née le {DATE_OF_BIRTH} à {LOCATION}.",
    "Envoyez la facture à {EMAIL_ADDRESS}, s'il vous plaît.",
    "Le dossier de {PERSON} (NIR : {FR_NIR}) est incomplet.",
    "Mon nouveau portable : {PHONE_NUMBER}. Mon ancien ne fonctionne plus.",
    "Remboursement à verser sur le compte {IBAN_CODE} au nom de {PERSON}.",
    "Madame {PERSON} souhaite résilier son abonnement.",
    "Livraison prévue au {ADDRESS} entre 8 h et 12 h.",
    "Le prestataire, SIRET {FR_SIRET}, intervient chez nous chaque lundi.",
    "Paiement refusé pour la carte bancaire {CREDIT_CARD}, veuillez réessayer.",
    "Contact urgence : {PERSON}, {PHONE_NUMBER}",
    "Nom : {PERSON}\nAdresse : {ADDRESS}\nCourriel : {EMAIL_ADDRESS}",
    "Le conducteur du véhicule {LICENCE_PLATE} ne s'est pas arrêté au feu rouge.",
    "{PERSON} a rejoint l'équipe de {LOCATION} le mois dernier.",
    "Salut, c'est {PERSON} ! Tu peux me rappeler au {PHONE_NUMBER} ?",
    "Pièce d'identité présentée : carte nationale d'identité {FR_ID_CARD}.",
    "Le titulaire du passeport {FR_PASSPORT} doit se présenter au guichet 4.",
    "Ci-joint mon RIB : {IBAN_CODE}.",
    "Le Dr {PERSON} consulte au {ADDRESS} le mardi et le jeudi.",
    "Adresse de facturation : {ADDRESS}",
    "Je vous transmets l'attestation de {PERSON}, née le {DATE_OF_BIRTH}.",
    "Merci de répondre à {EMAIL_ADDRESS} avant vendredi.",
    "Notre cabinet, immatriculé au RCS sous le numéro SIREN {FR_SIREN}, vous remercie.",
    "Sécurité sociale : {FR_NIR}",
    "Le locataire, {PERSON}, a quitté le logement du {ADDRESS}.",
    "Pour le prélèvement, utilisez l'IBAN suivant : {IBAN_CODE}",
    "Numéro de téléphone du standard : {PHONE_NUMBER}",
    "Monsieur {PERSON} demande un rendez-vous pour la semaine prochaine.",
    "La facture a été réglée avec la carte {CREDIT_CARD} le 3 juin.",
    "Je suis {PERSON}, responsable des achats chez nous, joignable au {PHONE_NUMBER}.",
    "Identifiant SIRET : {FR_SIRET}",
    "Envoi recommandé adressé à {PERSON}, {ADDRESS}.",
    "Voiture de fonction : {LICENCE_PLATE}, attribuée à {PERSON}.",
    "{PERSON} ({EMAIL_ADDRESS}) a validé la commande.",
    "L'assuré, né le {DATE_OF_BIRTH}, porte le numéro {FR_NIR}.",
    "Rendez-vous fixé avec Maître {PERSON} à son étude de {LOCATION}.",
    "Bonjour {PERSON}, votre colis est disponible en point relais.",
    "Le compte {IBAN_CODE} sera débité de 49,90 € le 5 de chaque mois.",
    "Merci d'appeler {PERSON} au {PHONE_NUMBER} après 18 h.",
    "Signé : {PERSON}, à {LOCATION}, le 12 mai.",
]
NEGATIVE = [
    "Le budget prévisionnel s'élève à 1 250 000 euros pour l'exercice 2025.",
    "La réunion est reportée au 14/07 à 10 h 30, salle 204.",
    "Référence de commande : CMD-2024-000318, à rappeler dans toute correspondance.",
    "Le taux de TVA applicable est de 20 %, soit 245,60 € pour cette facture.",
    "Le colis pèse 12,5 kg et mesure 60 x 40 x 30 cm.",
    "Veuillez consulter l'article L. 1234-5 du Code du travail.",
    "Le projet compte 42 participants répartis en 6 équipes.",
    "La version 3.12.1 du logiciel corrige 17 anomalies.",
    "Le train de 7 h 42 arrive en gare à 9 h 15.",
    "Le rapport annuel 2023 présente une croissance de 3,4 %.",
    "Merci de remplir le formulaire et de le renvoyer avant la fin de la semaine.",
    "Le service client est ouvert du lundi au vendredi de 9 h à 18 h.",
    "Le stock actuel est de 15 430 unités dans l'entrepôt principal.",
    "La température extérieure est descendue à -12 degrés cette nuit.",
    "Le ticket n° 88213 a été clos par l'équipe support.",
    "Le contrat prend effet le 1er janvier 2026 pour une durée de 36 mois.",
    "Prévoir 250 g de farine, 3 œufs et 50 cl de lait.",
    "La salle peut accueillir 120 personnes assises.",
    "Le code promotionnel PRINTEMPS24 donne droit à 15 % de réduction.",
    "La séance du conseil municipal débutera à 20 h précises.",
]


def render(template: str) -> tuple[str, list[dict[str, object]]]:
    text, spans, last = "", [], 0
    for match in re.finditer(r"\{([A-Z_]+)\}", template):
        text += template[last : match.start()]
        value = FILL[match.group(1)]()
        spans.append(
            {"type": match.group(1), "start": len(text), "end": len(text) + len(value), "value": value}
        )
        text += value
        last = match.end()
    return text + template[last:], spans


def main() -> None:
    rows = []
    for i in range(330):
        template = TEMPLATES[i % len(TEMPLATES)]
        text, spans = render(template)
        rows.append({"text": text, "spans": spans, "template": TEMPLATES.index(template)})
    for i in range(2 * len(NEGATIVE)):
        rows.append({"text": NEGATIVE[i % len(NEGATIVE)], "spans": [], "template": -1 - i % len(NEGATIVE)})
    rng.shuffle(rows)
    with OUT.open("w", encoding="utf-8") as out:
        for n, row in enumerate(rows):
            for span in row["spans"]:  # type: ignore[attr-defined]
                assert row["text"][span["start"] : span["end"]] == span["value"]  # type: ignore[index]
            out.write(json.dumps({"id": n, **row}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
