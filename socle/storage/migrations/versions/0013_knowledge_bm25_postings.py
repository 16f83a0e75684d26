"""PostgreSQL: keyword search ranks by BM25, as on SQLite, from a postings table and term statistics.

``ts_rank`` has no idf (a common word counts as much as a rare one) and ranked every matching chunk:
over 100,000 chunks a long query matched half of them (docs/benchmarks.md). BM25 needs, per query term,
how many chunks hold it and how often each does, which a ``tsvector`` cannot give cheaply. So:

- ``kb_index_postings (term, key, tf, length)``: one row per distinct term of each chunk, with the
  chunk's length, primary key ``(term, key)`` covering ``tf`` and ``length`` (a term's postings are
  one index-only range scan; a chunk's count for a term is one probe), deleted with its chunk;
- ``kb_index_search`` keeps the ids for the access filter and gains ``length`` (the chunk's terms plus
  its two scope tokens, as FTS5 counts them, so both stores give the same scores), and loses the
  ``tsvector`` and its GIN index; its collection index now covers the key and document id, so the
  access filter is an index-only scan;
- ``kb_index_terms (term, postings)`` and ``kb_index_stats (chunks, length)``: document frequencies,
  chunk count and total length, kept exact by statement-level triggers on both tables, which serialise
  on a transaction advisory lock (two writers never take the counters' row locks in opposite orders).

Existing rows are converted from their ``tsvector``: a term's frequency is its number of positions,
which the old literal capped at 255 per term and chunk (SQLite never had the cap). SQLite is unchanged.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LOCK = 5_031_013  # pg_advisory_xact_lock key of the keyword index's counters

_UPGRADE = (
    "CREATE TABLE kb_index_postings (term TEXT NOT NULL, "
    "key BIGINT NOT NULL REFERENCES kb_index_search (key) ON DELETE CASCADE, tf INTEGER NOT NULL, "
    "length INTEGER NOT NULL, PRIMARY KEY (term, key) INCLUDE (tf, length))",
    "CREATE INDEX kb_index_postings_key ON kb_index_postings (key)",
    "CREATE TABLE kb_index_terms (term TEXT PRIMARY KEY, postings BIGINT NOT NULL)",
    "CREATE TABLE kb_index_stats (id INTEGER PRIMARY KEY CHECK (id = 1), chunks BIGINT NOT NULL, "
    "length BIGINT NOT NULL)",
    "ALTER TABLE kb_index_search ADD COLUMN length INTEGER",
    "UPDATE kb_index_search s SET length = 2 + coalesce("
    "(SELECT sum(coalesce(array_length(u.positions, 1), 1)) FROM unnest(s.terms) u), 0)",
    "ALTER TABLE kb_index_search ALTER COLUMN length SET NOT NULL",
    "INSERT INTO kb_index_postings (term, key, tf, length) "
    "SELECT u.lexeme, s.key, coalesce(array_length(u.positions, 1), 1), s.length "
    "FROM kb_index_search s, unnest(s.terms) u",
    "DROP INDEX kb_index_search_collection",
    "CREATE INDEX kb_index_search_scope ON kb_index_search (collection_id) INCLUDE (key, document_id)",
    "DROP INDEX kb_index_search_terms",
    "ALTER TABLE kb_index_search DROP COLUMN terms",
    "INSERT INTO kb_index_terms (term, postings) SELECT term, count(*) FROM kb_index_postings GROUP BY term",
    "INSERT INTO kb_index_stats (id, chunks, length) "
    "SELECT 1, count(*), coalesce(sum(length), 0) FROM kb_index_search",
    f"""CREATE FUNCTION kb_index_count_terms() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({_LOCK});
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kb_index_terms (term, postings)
        SELECT term, count(*) FROM new_rows GROUP BY term ORDER BY term
        ON CONFLICT (term) DO UPDATE SET postings = kb_index_terms.postings + EXCLUDED.postings;
    ELSE
        UPDATE kb_index_terms t SET postings = t.postings - d.n
        FROM (SELECT term, count(*) AS n FROM old_rows GROUP BY term) d WHERE t.term = d.term;
        DELETE FROM kb_index_terms t USING (SELECT DISTINCT term FROM old_rows) d
        WHERE t.term = d.term AND t.postings <= 0;
    END IF;
    RETURN NULL;
END $$""",
    f"""CREATE FUNCTION kb_index_count_chunks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({_LOCK});
    IF TG_OP = 'INSERT' THEN
        UPDATE kb_index_stats SET chunks = chunks + d.n, length = length + d.l
        FROM (SELECT count(*) AS n, coalesce(sum(length), 0) AS l FROM new_rows) d WHERE id = 1;
    ELSE
        UPDATE kb_index_stats SET chunks = chunks - d.n, length = length - d.l
        FROM (SELECT count(*) AS n, coalesce(sum(length), 0) AS l FROM old_rows) d WHERE id = 1;
    END IF;
    RETURN NULL;
END $$""",
    "CREATE TRIGGER kb_index_postings_insert AFTER INSERT ON kb_index_postings "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_index_count_terms()",
    "CREATE TRIGGER kb_index_postings_delete AFTER DELETE ON kb_index_postings "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_index_count_terms()",
    "CREATE TRIGGER kb_index_search_insert AFTER INSERT ON kb_index_search "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_index_count_chunks()",
    "CREATE TRIGGER kb_index_search_delete AFTER DELETE ON kb_index_search "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION kb_index_count_chunks()",
)
_DOWNGRADE = (
    "DROP TRIGGER kb_index_search_delete ON kb_index_search",
    "DROP TRIGGER kb_index_search_insert ON kb_index_search",
    "DROP TRIGGER kb_index_postings_delete ON kb_index_postings",
    "DROP TRIGGER kb_index_postings_insert ON kb_index_postings",
    "DROP FUNCTION kb_index_count_chunks()",
    "DROP FUNCTION kb_index_count_terms()",
    "ALTER TABLE kb_index_search ADD COLUMN terms tsvector",
    "UPDATE kb_index_search s SET terms = coalesce((SELECT string_agg(format('%L:%s', p.term, "
    "(SELECT string_agg(g::text, ',') FROM generate_series(1, least(p.tf, 255)) g)), ' ') "
    "FROM kb_index_postings p WHERE p.key = s.key), '')::tsvector",
    "ALTER TABLE kb_index_search ALTER COLUMN terms SET NOT NULL",
    "CREATE INDEX kb_index_search_terms ON kb_index_search USING GIN (terms)",
    "DROP INDEX kb_index_search_scope",
    "CREATE INDEX kb_index_search_collection ON kb_index_search (collection_id)",
    "ALTER TABLE kb_index_search DROP COLUMN length",
    "DROP TABLE kb_index_stats",
    "DROP TABLE kb_index_terms",
    "DROP TABLE kb_index_postings",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _UPGRADE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _DOWNGRADE:
            op.execute(statement)
