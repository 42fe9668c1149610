-- nnn 0.1.0 -> 0.2.0: augmented pgvector columns (nnn.set_augmented, nnn.query_vector and
-- nnn.create_index's augmented options), nnn_search among an id set, evaluation and tuning
-- (nnn.evaluate, nnn.tune) with a per-index alpha (nnn.set_alpha, nnn.index_alpha) and bias
-- family (nnn.create_index's family and beta: NNN, DN or log-sum-exp), bias builds on Citus
-- workers (nnn.shard_bias), Faiss structures that stay usable after a pg_dump restored into
-- another cluster, batch queries sent as packed float32, and a change log that
-- only writers of the candidate table may append to and that searches read by xid range. Catalog rows, biases, triggers and
-- Faiss structures carry over unchanged.
\echo Use "ALTER EXTENSION nnn UPDATE TO '0.2.0'" to load this file. \quit

ALTER TABLE nnn.indexes ADD COLUMN augmented_column name;
ALTER TABLE nnn.indexes ADD COLUMN alpha real CHECK (alpha = alpha AND alpha BETWEEN -1000 AND 1000);
ALTER TABLE nnn.indexes ADD COLUMN family text NOT NULL DEFAULT 'nnn' CHECK (family IN ('nnn', 'dn', 'lse'));
ALTER TABLE nnn.indexes ADD COLUMN beta real CHECK (beta > 0 AND beta < 'Infinity');
ALTER TABLE nnn.indexes ADD CHECK ((family = 'lse') = (beta IS NOT NULL));

-- A structure restored from another cluster's dump (pg_dump, then pg_restore) carries that
-- cluster's transaction ids. A snapshot this cluster has not reached yet is replaced by the
-- earliest one, so that every change logged here counts as newer than the structure (a restore
-- logs none: the tables' triggers come after their data) and the structure stays in use.
CREATE FUNCTION nnn.ann_restored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.snapshot IS NOT NULL AND pg_catalog.pg_snapshot_xmax(NEW.snapshot)
                                    > pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot()) THEN
        NEW.snapshot := '3:3:';
        NEW.build_xid := NULL;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ann_restored BEFORE INSERT ON nnn.ann FOR EACH ROW EXECUTE FUNCTION nnn.ann_restored();

-- A cache's check reads only entries at or after its snapshot's xmin (older ones it has seen).
CREATE INDEX changes_index_name_xid ON nnn.changes (index_name, xid);

-- Whether the current user may log a change of `id` (NULL: a TRUNCATE) for index `index_name`:
-- only writers of its candidate table, as its triggers do.
CREATE FUNCTION nnn.may_log_change(index_name text, id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(bool_or(CASE WHEN may_log_change.id IS NULL
                                 THEN pg_catalog.has_table_privilege(i.candidates, 'TRUNCATE')
                                 ELSE pg_catalog.has_any_column_privilege(i.candidates, 'INSERT, UPDATE')
                                      OR pg_catalog.has_table_privilege(i.candidates, 'DELETE, TRUNCATE') END), false)
    FROM nnn.indexes i WHERE i.name = may_log_change.index_name
$$;
DROP POLICY changes_append ON nnn.changes;
CREATE POLICY changes_append ON nnn.changes FOR INSERT WITH CHECK (nnn.may_log_change(index_name, id));

DROP FUNCTION nnn.create_index(text, regclass, text, text, regclass, text, integer, text, text);

CREATE  FUNCTION nnn."create_index"(
	"name" TEXT, /* & str */
	"candidates" regclass, /* PgRelation */
	"id" TEXT, /* & str */
	"embedding" TEXT, /* & str */
	"reference" regclass, /* PgRelation */
	"reference_embedding" TEXT, /* & str */
	"k" INT DEFAULT 128, /* i32 */
	"bias_column" TEXT DEFAULT 'nnn_bias', /* & str */
	"ann" TEXT DEFAULT NULL, /* Option < & str > */
	"augmented" TEXT DEFAULT NULL, /* Option < & str > */
	"augmented_index" TEXT DEFAULT NULL, /* Option < & str > */
	"augmented_options" TEXT DEFAULT NULL, /* Option < & str > */
	"family" TEXT DEFAULT 'nnn', /* & str */
	"beta" double precision DEFAULT NULL /* Option < f64 > */
) RETURNS TABLE (
	"rows" bigint,  /* i64 */
	"skipped" bigint,  /* i64 */
	"reference_rows" bigint,  /* i64 */
	"k" INT,  /* i32 */
	"seconds" double precision  /* f64 */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_index_augmented_wrapper';



CREATE  FUNCTION "nnn_search"(
	"name" TEXT, /* & str */
	"query" real[], /* Array < f32 > */
	"k" INT, /* i32 */
	"ids" bigint[] /* Vec < Option < i64 > > */
) RETURNS TABLE (
	"id" bigint,  /* i64 */
	"score" real  /* f32 */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'nnn_search_among_wrapper';



CREATE  FUNCTION nnn."query_vector"(
	"query" anyelement, /* Option < AnyElement > */
	"alpha" double precision DEFAULT NULL /* Option < f64 > */
) RETURNS anyelement /* Option < AnyElement > */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'query_vector_wrapper';



CREATE  FUNCTION nnn."set_augmented"(
	"name" TEXT, /* & str */
	"vector_type" TEXT, /* Option < & str > */
	"method" TEXT DEFAULT NULL, /* Option < & str > */
	"options" TEXT DEFAULT NULL, /* Option < & str > */
	"column" TEXT DEFAULT 'nnn_augmented' /* & str */
) RETURNS TABLE (
	"column_name" TEXT,  /* Option < String > */
	"dimensions" INT,  /* Option < i32 > */
	"index_name" TEXT,  /* Option < String > */
	"seconds" double precision  /* f64 */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_augmented_wrapper';

-- evaluation and tuning, an index's own alpha
CREATE  FUNCTION nnn."evaluate"(
	"name" TEXT, /* & str */
	"queries" regclass, /* PgRelation */
	"query_embedding" TEXT, /* & str */
	"answer" TEXT, /* & str */
	"ks" bigint[] DEFAULT '{8,32,128,512}', /* Vec < i64 > */
	"alphas" double precision[] DEFAULT '{0.25,0.5,0.75,1,1.25}', /* Vec < f64 > */
	"families" TEXT[] DEFAULT '{nnn}', /* Vec < String > */
	"betas" double precision[] DEFAULT '{10,20,50}' /* Vec < f64 > */
) RETURNS TABLE (
	"family" TEXT,  /* String */
	"k" INT,  /* Option < i32 > */
	"beta" real,  /* Option < f32 > */
	"alpha" real,  /* f32 */
	"recall_1" double precision,  /* f64 */
	"recall_5" double precision,  /* f64 */
	"recall_10" double precision,  /* f64 */
	"mrr" double precision,  /* f64 */
	"queries" INT  /* i32 */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'evaluate_wrapper';

CREATE  FUNCTION nnn."tune"(
	"name" TEXT, /* & str */
	"queries" regclass, /* PgRelation */
	"query_embedding" TEXT, /* & str */
	"answer" TEXT, /* & str */
	"ks" bigint[] DEFAULT '{8,32,128,512}', /* Vec < i64 > */
	"alphas" double precision[] DEFAULT '{0.25,0.5,0.75,1,1.25}', /* Vec < f64 > */
	"metric" TEXT DEFAULT 'recall_1', /* & str */
	"tune_fraction" double precision DEFAULT 0.5, /* f64 */
	"seed" bigint DEFAULT 0, /* i64 */
	"apply" bool DEFAULT false, /* bool */
	"families" TEXT[] DEFAULT '{nnn}', /* Vec < String > */
	"betas" double precision[] DEFAULT '{10,20,50}' /* Vec < f64 > */
) RETURNS TABLE (
	"pick" TEXT,  /* String */
	"family" TEXT,  /* String */
	"k" INT,  /* Option < i32 > */
	"beta" real,  /* Option < f32 > */
	"alpha" real,  /* f32 */
	"tuning" double precision,  /* f64 */
	"recall_1" double precision,  /* f64 */
	"recall_5" double precision,  /* f64 */
	"recall_10" double precision,  /* f64 */
	"mrr" double precision,  /* f64 */
	"test_queries" INT,  /* i32 */
	"applied" bool  /* bool */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'tune_wrapper';

CREATE  FUNCTION nnn."set_alpha"(
	"name" TEXT, /* & str */
	"alpha" double precision /* Option < f64 > */
) RETURNS real /* f32 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_alpha_wrapper';

CREATE  FUNCTION nnn."index_alpha"(
	"name" TEXT /* & str */
) RETURNS real /* f32 */
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'index_alpha_wrapper';

-- Citus: each worker computes its shards' biases (called by nnn.build_bias)
CREATE  FUNCTION nnn."shard_bias"(
	"shard" oid, /* pg_sys :: Oid */
	"key" bigint, /* i64 */
	"embedding" TEXT, /* & str */
	"key_column" TEXT, /* & str */
	"reference_shard" TEXT, /* & str */
	"reference_embedding" TEXT, /* & str */
	"family" TEXT, /* & str */
	"k" INT, /* i32 */
	"beta" real /* Option < f32 > */
) RETURNS real /* Option < f32 > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'shard_bias_wrapper';

-- batch queries sent as packed float32
CREATE  FUNCTION "nnn_search_batch"(
	"name" TEXT, /* & str */
	"queries" bytea, /* & [u8] */
	"dim" INT, /* i32 */
	"k" INT /* i32 */
) RETURNS TABLE (
	"query_no" INT,  /* i32 */
	"rank" INT,  /* i32 */
	"id" bigint,  /* i64 */
	"score" real  /* f32 */
)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'nnn_search_batch_packed_wrapper';
