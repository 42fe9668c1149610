-- nnn_score: q·r − alpha·bias, for ORDER BY … LIMIT queries and ORMs.
CREATE EXTENSION nnn;
SELECT nnn_score(ARRAY[1,2,3]::real[], ARRAY[0.5,0.5,1]::real[], 2, 0.25);
-- alpha defaults to the nnn.alpha setting (0.75)
SHOW nnn.alpha;
SELECT nnn_score('{1,0}', '{1,0}', 1);
SET nnn.alpha = 0.5;
SELECT nnn_score('{1,0}', '{1,0}', 1);
RESET nnn.alpha;
-- float8[] embeddings are accepted through the implicit cast
SELECT nnn_score('{1,0}'::float8[]::real[], '{1,0}', 1, 0);
-- STRICT: NULL in, NULL out
SELECT nnn_score(NULL, '{1,0}', 1) IS NULL AS is_null;
-- errors
SELECT nnn_score('{1,0}', '{1,0,0}', 1);
SELECT nnn_score('{1,NULL}', '{1,0}', 1);
SELECT nnn_score('{1,NaN}', '{1,0}', 1);
SELECT nnn_score('{1,0}', '{1,0}', 1, 'Infinity');
SET nnn.alpha = 'abc';
-- declared honestly
SELECT proname, provolatile, proisstrict, proparallel FROM pg_proc
WHERE proname IN ('nnn_score', 'nnn_alpha', 'nnn_search', 'nnn_search_batch', 'build_bias', 'create_index',
                  'query_vector', 'set_augmented')
ORDER BY proname, pronargs;
