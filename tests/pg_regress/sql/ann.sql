-- Faiss structures over [embedding, bias]: built, stored, searched, kept up to date.
CREATE TABLE pts (id bigint PRIMARY KEY, emb real[]);
INSERT INTO pts SELECT i, ARRAY(SELECT sin(i * j * 0.37 + j) FROM generate_series(1, 8) j)::real[]
FROM generate_series(1, 3000) i;
CREATE TABLE refq (emb real[]);
INSERT INTO refq SELECT ARRAY(SELECT cos(i * j * 0.11) FROM generate_series(1, 8) j)::real[]
FROM generate_series(1, 200) i;
SELECT rows FROM nnn.create_index('pts', 'pts', 'id', 'emb', 'refq', 'emb', k => 8, ann => 'IVF16,Flat');
SELECT index_name, factory, live_rows, dead_rows, bytes > 0 AS stored, snapshot IS NOT NULL AS built FROM nnn.ann;
SELECT count(*) > 0 AS chunks FROM nnn.ann_chunks WHERE index_name = 'pts';
-- share of the exact top-k that the Faiss path returns, and whether its scores are exact
CREATE FUNCTION agreement(q real[], k int) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    approx bigint[];
    exact bigint[];
BEGIN
    PERFORM set_config('nnn.ann', 'off', true);
    SELECT array_agg(id) INTO exact FROM nnn_search('pts', q, k);
    PERFORM set_config('nnn.ann', 'on', true);
    SELECT array_agg(id) INTO approx FROM nnn_search('pts', q, k);
    RETURN (SELECT count(*) FROM unnest(approx) a WHERE a = ANY (exact))::numeric / k;
END
$$;
CREATE VIEW queries AS SELECT emb AS q FROM pts WHERE id % 300 = 0;
-- all 16 lists visited: the IVF structure is exact
SET nnn.probes = 16;
SELECT min(agreement(q, 10)) AS all_lists FROM queries;
SELECT bool_and(abs(s.score - nnn_score(p.emb, q, p.nnn_bias)) < 1e-5) AS exact_scores
FROM queries, nnn_search('pts', q, 10) s JOIN pts p USING (id);
-- one list: fast, and it misses some
SET nnn.probes = 1;
SELECT avg(agreement(q, 10)) < 1 AS one_list_misses FROM queries;
SET nnn.probes = 16;
SELECT index_name, kind FROM nnn.cache_info() ORDER BY kind;
-- rows written since the build are scored exactly beside it (own writes included) ...
CREATE TABLE probe AS SELECT emb AS q FROM pts WHERE id = 900;
BEGIN;
INSERT INTO pts SELECT 100000, ARRAY(SELECT 10 * x FROM unnest(q) x)::real[] FROM probe;
SELECT id FROM probe, nnn_search('pts', q, 1);
ROLLBACK;
SELECT id <> 100000 AS gone FROM probe, nnn_search('pts', q, 1);
INSERT INTO pts SELECT 100000, ARRAY(SELECT 10 * x FROM unnest(q) x)::real[] FROM probe;
DELETE FROM pts WHERE id = 301;
SELECT id FROM probe, nnn_search('pts', q, 1);
SELECT count(*) AS deleted_row_found FROM probe, nnn_search('pts', q, 3001) WHERE id = 301;
-- ... and merged into it without retraining
SELECT live_rows, dead_rows FROM nnn.merge_changes('pts');
SELECT id FROM probe, nnn_search('pts', q, 1);
SELECT min(agreement(q, 10)) AS after_merge FROM queries;
-- refresh recomputes the biases and retrains
SELECT rows FROM nnn.refresh('pts');
SELECT live_rows, dead_rows FROM nnn.ann;
SELECT min(agreement(q, 10)) AS after_refresh FROM queries;
-- other structures: HNSW (lifted to L2, so inner products keep their recall)
SELECT live_rows FROM nnn.set_ann('pts', 'HNSW16');
SET nnn.ef_search = 200;
SELECT avg(agreement(q, 10)) >= 0.9 AS hnsw_recall FROM queries;
-- a TRUNCATE sends searches to the exact scan until refresh
TRUNCATE pts;
SELECT count(*) FROM nnn_search('pts', '{1,0,0,0,0,0,0,0}', 5);
SELECT * FROM nnn.merge_changes('pts');
SELECT rows FROM nnn.refresh('pts');
SELECT live_rows, bytes, snapshot IS NULL AS unbuilt FROM nnn.ann;
SELECT * FROM nnn.merge_changes('pts');
INSERT INTO pts SELECT i, ARRAY(SELECT sin(i * j * 0.37 + j) FROM generate_series(1, 8) j)::real[]
FROM generate_series(1, 500) i;
SELECT rows FROM nnn.refresh('pts');
SELECT live_rows FROM nnn.ann;
SELECT min(agreement(q, 5)) AS rebuilt FROM (SELECT emb AS q FROM pts WHERE id % 100 = 0) x;
-- errors
SELECT * FROM nnn.set_ann('pts', 'NoSuchStructure');
SELECT * FROM nnn.set_ann('pts', 'IVF4096,Flat');
SELECT * FROM nnn.set_ann('nope', 'Flat');
SELECT * FROM nnn_search('pts', '{1,0,0}', 5);
CREATE ROLE nnn_stranger;
SET ROLE nnn_stranger;
SELECT * FROM nnn.set_ann('pts', NULL);
SELECT count(*) FROM nnn.ann_chunks;
RESET ROLE;
DROP ROLE nnn_stranger;
-- NULL drops the structure; searches scan exactly
SELECT * FROM nnn.set_ann('pts', NULL);
SELECT count(*) FROM nnn.ann_chunks;
SELECT count(*) FROM nnn_search('pts', '{1,0,0,0,0,0,0,0}', 5);
-- nnn.backend = faiss computes the same biases through a Faiss index over the reference set
ALTER TABLE pts ADD COLUMN cpu_bias real;
UPDATE pts SET cpu_bias = nnn_bias;
SET nnn.backend = faiss;
SELECT rows FROM nnn.build_bias('pts', 'emb', 'refq', 'emb', 'faiss_bias', k => 8);
SELECT max(abs(faiss_bias - cpu_bias)) < 1e-5 AS same_bias FROM pts;
SET nnn.faiss_backend_index = 'Bogus';
SELECT rows FROM nnn.build_bias('pts', 'emb', 'refq', 'emb', 'faiss_bias', k => 8);
RESET nnn.backend;
RESET nnn.faiss_backend_index;
-- dropping the index drops its structure
SELECT live_rows FROM nnn.set_ann('pts', 'Flat');
SELECT nnn.drop_index('pts');
SELECT count(*) FROM nnn.ann;
SELECT count(*) FROM nnn.ann_chunks;
DROP VIEW queries;
DROP TABLE pts, refq, probe;
DROP FUNCTION agreement;
