-- NNN inside the planner: the augmented pgvector column [embedding, bias], ranked by
-- pgvector's <#> against nnn.query_vector(q) = [q, -alpha] in ORDER BY ... LIMIT.
CREATE TABLE pv_img (id int PRIMARY KEY, emb real[], shop text);
INSERT INTO pv_img VALUES (0,'{0,1,0,0}','a'),(1,'{1,0,0,0}','b'),(2,'{0,-1,0,0}','a'),(3,'{-1,0,0,0}','b'),(4,'{0,0,1,0}','b');
CREATE TABLE pv_cap (emb real[]);
CREATE TEMP VIEW pv_q(e) AS
VALUES ('{0,0.6,0.8,0}'::real[]), ('{0.6,0,0.8,0}'), ('{0,-0.6,0.8,0}'), ('{-0.6,0,0.8,0}'), ('{0,0,1,0}');
INSERT INTO pv_cap SELECT ARRAY[e[1], e[2] + d, e[3], e[4]] FROM pv_q, unnest(ARRAY[0.01, -0.01]::real[]) d;
INSERT INTO pv_cap SELECT ARRAY[e[1] + d, e[2], e[3], e[4]] FROM pv_q, unnest(ARRAY[0.01, -0.01]::real[]) d;
-- without pgvector in the database: a clear error, and nothing is left behind
SELECT rows FROM nnn.create_index('pv', 'pv_img', 'id', 'emb', 'pv_cap', 'emb', k => 2, augmented => 'vector');
SELECT count(*) AS indexes, (SELECT count(*) FROM pg_attribute WHERE attrelid = 'pv_img'::regclass AND attname = 'nnn_bias') AS bias_columns
FROM nnn.indexes WHERE name = 'pv';
-- query_vector needs no pgvector for real[]: [q, -alpha]
SELECT nnn.query_vector('{0,0.6,0.8,0}'::real[], 0.5);
SET nnn.alpha = 0.25;
SELECT nnn.query_vector('{1,2}'::real[]);
RESET nnn.alpha;
CREATE EXTENSION vector;
SELECT nnn.query_vector('[1,2]'::vector), nnn.query_vector('[1,2]'::halfvec, 0.5);
SELECT nnn.query_vector(NULL::vector) IS NULL AS null_in_null_out;
SELECT nnn.query_vector('[1,2]'::vector, 'NaN');
SELECT nnn.query_vector('{1,NULL}'::real[]);
SELECT nnn.query_vector(1::bigint);
SELECT rows FROM nnn.create_index('pv', 'pv_img', 'id', 'emb', 'pv_cap', 'emb', k => 2, augmented => 'vector');
SELECT attname, format_type(atttypid, atttypmod), attgenerated FROM pg_attribute
WHERE attrelid = 'pv_img'::regclass AND attnum > 0 ORDER BY attnum;
SELECT name, augmented_column FROM nnn.indexes WHERE name = 'pv';
-- the ORDER BY path: -(augmented <#> query_vector) is the NNN score; the same as nnn_search
SELECT id, round((-(nnn_augmented <#> nnn.query_vector('[0,0.6,0.8,0]'::vector)))::numeric, 5) AS score
FROM pv_img ORDER BY nnn_augmented <#> nnn.query_vector('[0,0.6,0.8,0]'::vector) LIMIT 3;
SELECT id, round(score::numeric, 5) AS score FROM nnn_search('pv', '[0,0.6,0.8,0]'::vector, 3);
-- a WHERE filter, and nnn_search among the ids a subquery selects: the same rows
SELECT id, round((-(nnn_augmented <#> nnn.query_vector('[0,0,1,0]'::vector)))::numeric, 5) AS score
FROM pv_img WHERE shop = 'a' ORDER BY nnn_augmented <#> nnn.query_vector('[0,0,1,0]'::vector) LIMIT 2;
SELECT id, round(score::numeric, 5) AS score
FROM nnn_search('pv', '{0,0,1,0}', 2, (SELECT array_agg(id) FROM pv_img WHERE shop = 'a'));
SELECT count(*) FROM nnn_search('pv', '{0,0,1,0}', 2, '{}');
SELECT count(*) FROM nnn_search('pv', '{0,0,1,0}', 2, NULL);
SELECT id FROM nnn_search('pv', '{0,0,1,0}', 5, '{4,4,NULL,99}');
SELECT * FROM nnn_search('pv', '{0,0,1}', 2, '{1}');
SELECT * FROM nnn_search('pv', '{0,0,1,0}', 0, '{1}');
-- alpha per query: an argument, or SET LOCAL nnn.alpha
SELECT id FROM pv_img ORDER BY nnn_augmented <#> nnn.query_vector('[0,0.6,0.8,0]'::vector, 0) LIMIT 1;
-- rows written later get their bias and augmented vector in the same statement
INSERT INTO pv_img VALUES (5, '{0,0.6,0.8,0}', 'a');
UPDATE pv_img SET emb = '{0,0,0,1}' WHERE id = 1;
SELECT count(*) AS inconsistent FROM pv_img WHERE nnn_augmented::real[] IS DISTINCT FROM array_append(emb, nnn_bias);
SELECT id, round(nnn_bias::numeric, 5) AS bias FROM pv_img WHERE id IN (1, 5) ORDER BY id;
UPDATE pv_img SET emb = NULL WHERE id = 1;
SELECT id, nnn_bias IS NULL AS no_bias, nnn_augmented IS NULL AS no_augmented FROM pv_img WHERE id = 1;
-- an HNSW index over the column (inner product), used by ORDER BY ... LIMIT
SELECT column_name, dimensions, index_name FROM nnn.set_augmented('pv', 'vector', 'hnsw', 'm = 8, ef_construction = 32');
SELECT indexdef FROM pg_indexes WHERE indexname = 'nnn_pv_augmented';
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM pv_img ORDER BY nnn_augmented <#> nnn.query_vector('[0,0.6,0.8,0]'::vector) LIMIT 3;
SELECT id FROM pv_img ORDER BY nnn_augmented <#> nnn.query_vector('[0,0.6,0.8,0]'::vector) LIMIT 3;
RESET enable_seqscan;
-- halfvec (half the bytes) with IVFFlat
SELECT column_name, dimensions, index_name FROM nnn.set_augmented('pv', 'halfvec', 'ivfflat', 'lists = 2');
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'pv_img'::regclass AND attname = 'nnn_augmented';
SELECT id FROM pv_img ORDER BY nnn_augmented <#> nnn.query_vector('[0,0.6,0.8,0]'::halfvec) LIMIT 1;
-- bad arguments: clear errors, the column as it was
SELECT * FROM nnn.set_augmented('pv', 'sparsevec');
SELECT * FROM nnn.set_augmented('pv', 'vector', 'diskann');
SELECT * FROM nnn.set_augmented('pv', 'vector', 'hnsw', 'm = 16; DROP TABLE pv_img');
SELECT * FROM nnn.set_augmented('pv', 'vector', 'hnsw', 'lists = 4');
SELECT * FROM nnn.set_augmented('pv', 'vector', 'hnsw', 'm = -1');
SELECT * FROM nnn.set_augmented('pv', NULL, 'hnsw');
SELECT * FROM nnn.set_augmented('nope', 'vector');
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'pv_img'::regclass AND attname = 'nnn_augmented';
-- wider than pgvector indexes a vector column: the hint names halfvec
CREATE TABLE pv_wide (id int PRIMARY KEY, emb real[]);
CREATE TABLE pv_wide_ref (emb real[]);
INSERT INTO pv_wide SELECT 1, array_fill(0.01::real, ARRAY[2000]);
INSERT INTO pv_wide_ref SELECT array_fill(0.02::real, ARRAY[2000]);
SELECT rows FROM nnn.create_index('wide', 'pv_wide', 'id', 'emb', 'pv_wide_ref', 'emb', k => 1,
                                  augmented => 'vector', augmented_index => 'hnsw');
SELECT count(*) FROM nnn.indexes WHERE name = 'wide';
SELECT rows FROM nnn.create_index('wide', 'pv_wide', 'id', 'emb', 'pv_wide_ref', 'emb', k => 1,
                                  augmented => 'halfvec', augmented_index => 'hnsw');
SELECT nnn.drop_index('wide', drop_bias_column => true);
SELECT attname FROM pg_attribute WHERE attrelid = 'pv_wide'::regclass AND attnum > 0 AND NOT attisdropped;
-- embedding columns of pgvector types: vector and halfvec
CREATE TABLE pv_typed (id int PRIMARY KEY, v vector(4), h halfvec(4));
INSERT INTO pv_typed SELECT id, emb::vector, emb::halfvec FROM pv_img WHERE emb IS NOT NULL;
SELECT rows FROM nnn.build_bias('pv_typed', 'v', 'pv_cap', 'emb', 'bias_v', k => 2);
SELECT rows FROM nnn.build_bias('pv_typed', 'h', 'pv_cap', 'emb', 'bias_h', k => 2);
-- vector holds the real[] values exactly; halfvec rounds 0.6 and 0.8 to 16 bits
SELECT count(*) FILTER (WHERE t.bias_v IS DISTINCT FROM i.nnn_bias) AS vector_differs,
       max(abs(t.bias_h - i.nnn_bias)) < 1e-3 AS halfvec_close
FROM pv_typed t JOIN pv_img i USING (id);
SELECT rows FROM nnn.create_index('typed', 'pv_typed', 'id', 'v', 'pv_cap', 'emb', k => 2, bias_column => 'bias_v');
SELECT id FROM nnn_search('typed', '[0,0.6,0.8,0]'::vector, 2);
SELECT id FROM pv_typed ORDER BY nnn_score(v, '[0,0.6,0.8,0]'::vector, bias_v) DESC LIMIT 2;
SELECT id FROM pv_typed ORDER BY nnn_score(h::real[], '{0,0.6,0.8,0}', bias_h) DESC LIMIT 2;
-- dropping the index with its bias column drops the augmented column first
SELECT nnn.drop_index('pv', drop_bias_column => true);
SELECT attname FROM pg_attribute WHERE attrelid = 'pv_img'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;
SELECT nnn.drop_index('typed');
DROP VIEW pv_q;
DROP TABLE pv_img, pv_cap, pv_wide, pv_wide_ref, pv_typed;
DROP EXTENSION vector;
