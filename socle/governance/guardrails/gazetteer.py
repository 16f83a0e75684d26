"""Word lists for the rule-based name and address recognisers (used alone when no NER model is
installed, and beside it otherwise). Written by hand from common-knowledge lists of frequent given
names in France, the UK, the US and the rest of Europe; not derived from any evaluation set."""

from __future__ import annotations

__all__ = ["FIRST_NAMES", "HONORIFICS", "NOT_IN_NAMES", "NOT_NAMES", "STREET_TYPES_EN", "STREET_TYPES_FR"]

FIRST_NAMES = frozenset(
    """
    adam adele adèle adrien agathe agnès ahmed aicha aïcha alain alex alexandra alexandre alexis alice
    aline amandine ambre amelie amélie ana anaïs andre andré andrea andreas andrew angela angelique
    angélique anna anne annie anthony antoine antonio arnaud arthur audrey aurelie aurélie axel baptiste
    barbara basile bastien beatrice béatrice benjamin benoit benoît bernard bertrand brigitte bruno camille
    carla carlos caroline catherine cecile cécile celine céline chantal charles charlotte chloe chloé
    christian christine christophe claire claude clement clément clemence clémence colette corinne cyril
    damien daniel danielle david delphine denis denise didier dominique dylan edouard édouard elena eliane
    elisa elise élise elodie élodie emilie émilie emma emmanuel emmanuelle eric éric esther etienne étienne
    eva fabien fabienne fabrice fanny fatima fatou felix félix florence florian francis francois françois
    francoise françoise frederic frédéric gabriel gabrielle gael gaël gaelle gaëlle genevieve geneviève
    georges gerard gérard gilbert gilles ginette guillaume guy helene hélène henri hugo hugues ines inès
    irene isabelle jacqueline jacques jade jean jeanne jeremy jérémy jerome jérôme joel joël johanna
    jonathan jordan joseph josiane julie julien juliette justine karim karine kevin laetitia laura laurence
    laurent lea léa leo léo leon léon lina linda lisa louis louise luc lucas lucie lucien lucille ludovic
    lydie madeleine manon marc marcel margaux margot marguerite maria marianne marie marine marion martine
    mathieu mathilde matthieu maurice maxime melanie mélanie michel michele michèle michelle mickael
    mohamed monique morgane muriel myriam nadia nadine nathalie nicolas nicole noah noemie noémie oceane
    océane odette olivier olivia pascal pascale patrice patricia patrick paul paulette pauline philippe
    pierre quentin rachel raphael raphaël raymond regine régine remi rémi renaud rene rené richard robert
    roger romain rose sabine sacha samuel sandrine sarah sebastien sébastien serge simon simone solange
    sophie stephane stéphane stephanie stéphanie suzanne sylvain sylvie theo théo therese thérèse thierry
    thomas tristan valentin valerie valérie vanessa veronique véronique victor victoria vincent virginie
    xavier yann yannick yasmine yves yvette yvonne zoe zoé
    aaron abigail alan albert alexander alice alison amanda amber amy andrew angela ann anthony ashley
    barbara betty beverly billy bobby brandon brenda brian bruce carol carolyn catherine charles cheryl
    chris christina christopher cynthia deborah debra dennis diana diane donald donna doris dorothy douglas
    edward elizabeth emily eric ethan evelyn frances frank gary george gloria grace gregory hannah harold
    heather helen henry jack jacob james janet janice jason jeffrey jennifer jerry jessica joan joe john
    johnny jose joshua joyce juan judith judy justin karen katherine kathleen kathryn kelly kenneth kevin
    kimberly kyle larry laura lauren lawrence linda lisa logan louis madison margaret maria marilyn mark
    martha mary matthew megan melissa michael michelle nancy natalie nathan nicholas noah olivia pamela
    patrick paul peter philip rachel ralph randy raymond rebecca richard robert roger ronald roy russell
    ruth ryan samantha sandra sara sarah scott sean sharon shirley stephen steven susan teresa terry
    theresa timothy tyler victoria virginia walter wayne william willie zachary
    ahmet ali anders andrzej anja anton astrid bjorn björn carmen chen dmitri elena emil erik eva fatma
    francesca giovanni giuseppe greta hans hiroshi igor ingrid ivan jan javier jens jorge juan jürgen
    karl katarzyna klaus lars lena leonie lukas magnus marco maria mario marta mateo mehmet mikhail nina
    olga pablo paolo pedro piotr rafael sergei sergio sofia sven tomasz ursula vladimir wei wolfgang yuki
    """.split()
)
"""Frequent given names, lower-case."""

HONORIFICS = (
    "m", "mme", "mlle", "mr", "mrs", "ms", "miss", "dr", "pr", "prof", "me", "monsieur", "madame",
    "mademoiselle", "maître", "maitre", "docteur", "professeur", "sir", "lady", "lord", "dame",
)  # fmt: skip
"""Titles that introduce a person's name (``M.``, ``Mme``, ``Dr``...)."""

STREET_TYPES_FR = (
    "rue", "avenue", "av", "boulevard", "bd", "place", "allée", "allee", "chemin", "impasse", "quai",
    "route", "cours", "square", "passage", "voie", "rond-point", "faubourg", "esplanade", "résidence",
    "residence", "lotissement", "hameau", "villa", "cité", "cite", "parvis", "sentier", "mail",
)  # fmt: skip
STREET_TYPES_EN = (
    "street", "st", "road", "rd", "avenue", "ave", "boulevard", "blvd", "lane", "ln", "drive", "dr",
    "court", "ct", "way", "place", "pl", "square", "sq", "terrace", "close", "crescent", "parkway",
    "highway", "hwy", "circle", "trail", "row", "gardens", "grove", "hill", "park", "walk",
)  # fmt: skip

NOT_NAMES = frozenset(
    """
    le la les un une des ce cette ces mon ma mes ton ta tes son sa ses notre votre leur nos vos leurs
    je tu il elle nous vous ils elles on the a an this that these those my your his her our their i you
    he she we they it bonjour merci madame monsieur cher chère dear hello hi thanks regards cordialement
    lundi mardi mercredi jeudi vendredi samedi dimanche monday tuesday wednesday thursday friday saturday
    sunday janvier février mars avril mai juin juillet août septembre octobre novembre décembre january
    february march april may june july august september october november december
    """.split()
)
"""Capitalised words that are never a given name at the start of a name."""

NOT_IN_NAMES = NOT_NAMES | frozenset(
    """
    and or of for to in on at by with from de du des et ou pour sur dans avec chez sans
    street road avenue boulevard lane drive court place square rue allée chemin quai route
    university université college school école institute institut hospital hôpital clinic clinique
    bank banque company société group groupe inc ltd llc corp sa sas sarl gmbh plc co team équipe
    hotel hôtel restaurant café museum musée church église city ville county state états united unis
    north south east west nord sud est ouest new nouveau nouvelle san saint sainte st mount mont lake lac
    river rivière park parc republic république kingdom royaume national nationale international
    department département ministry ministère council conseil office bureau service services
    center centre centre-ville airport aéroport station gare port island île beach plage valley
    mr mrs ms miss dr prof sir madam monsieur madame mademoiselle docteur maître
    please thank thanks dear regards best kind yours sincerely merci cordialement bonjour bonsoir
    i you he she we they it my your his her our their what who when where why how which this that
    yes no ok okay hello hi hey not all any every some one two three first second last next
    """.split()
)
"""Words that never belong to a person's name: a capitalised run containing one is not a name."""
