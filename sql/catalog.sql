-- The registry of searchable sets and the trigger that keeps biases fresh.
CREATE SCHEMA IF NOT EXISTS nnn;
GRANT USAGE ON SCHEMA nnn TO PUBLIC;

-- One row per index made by nnn.create_index. Anyone may read it; a row can be written only
-- by members of the role that owns its candidate table (row-level security below).
CREATE TABLE nnn.indexes (
    name                text PRIMARY KEY,
    candidates          regclass NOT NULL,
    id_column           name NOT NULL,
    embedding_column    name NOT NULL,
    reference           regclass NOT NULL,
    reference_embedding name NOT NULL,
    bias_column         name NOT NULL,
    k                   integer NOT NULL CHECK (k > 0),
    built_at            timestamptz,
    log_epoch           bigint NOT NULL DEFAULT 0,
    -- the stored generated column [embedding, bias] as pgvector's vector/halfvec, if any
    -- (nnn.set_augmented)
    augmented_column    name,
    -- the index's own bias weight (nnn.set_alpha, nnn.tune); NULL: nnn.alpha
    alpha               real CHECK (alpha = alpha AND alpha BETWEEN -1000 AND 1000),
    -- how biases are computed: nnn (mean of the top k), dn (mean of all), lse (at beta)
    family              text NOT NULL DEFAULT 'nnn' CHECK (family IN ('nnn', 'dn', 'lse')),
    beta                real CHECK (beta > 0 AND beta < 'Infinity'),
    CHECK ((family = 'lse') = (beta IS NOT NULL))
);
SELECT pg_catalog.pg_extension_config_dump('nnn.indexes', '');
ALTER TABLE nnn.indexes ENABLE ROW LEVEL SECURITY;
CREATE POLICY indexes_read ON nnn.indexes FOR SELECT USING (true);
CREATE POLICY indexes_owner_insert ON nnn.indexes FOR INSERT WITH CHECK (
    pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = candidates), 'USAGE'));
CREATE POLICY indexes_owner_update ON nnn.indexes FOR UPDATE USING (
    pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = candidates), 'USAGE'));
CREATE POLICY indexes_owner_delete ON nnn.indexes FOR DELETE USING (
    pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = candidates), 'USAGE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON nnn.indexes TO PUBLIC;

-- Whether the current user may write the catalog rows of index `name` (member of the role
-- that owns its candidate table).
CREATE FUNCTION nnn.owns_index(name text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(pg_catalog.pg_has_role(c.relowner, 'USAGE'), false)
    FROM nnn.indexes i JOIN pg_catalog.pg_class c ON c.oid = i.candidates WHERE i.name = owns_index.name
$$;

-- Faiss structures over [embedding, bias] (nnn.set_ann): one row per index that has one.
-- snapshot and build_xid say what the serialized structure holds: rows written by
-- transactions that snapshot did not see (other than build_xid itself) come from nnn.changes.
CREATE TABLE nnn.ann (
    index_name text PRIMARY KEY REFERENCES nnn.indexes (name) ON DELETE CASCADE,
    factory    text NOT NULL,
    snapshot   pg_snapshot,
    build_xid  xid8,
    live_rows  bigint,
    dead_rows  bigint,
    bytes      bigint,
    built_at   timestamptz
);
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
-- The serialized structure in 1 MiB pieces: transactional, WAL-logged and replicated with
-- the rest of the database. Readable only by those who may read the candidate table.
CREATE TABLE nnn.ann_chunks (
    index_name text NOT NULL REFERENCES nnn.ann (index_name) ON DELETE CASCADE,
    seq        integer NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (index_name, seq)
);
ALTER TABLE nnn.ann_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
SELECT pg_catalog.pg_extension_config_dump('nnn.ann', '');
SELECT pg_catalog.pg_extension_config_dump('nnn.ann_chunks', '');
ALTER TABLE nnn.ann ENABLE ROW LEVEL SECURITY;
CREATE POLICY ann_read ON nnn.ann FOR SELECT USING (true);
CREATE POLICY ann_owner_write ON nnn.ann FOR ALL USING (nnn.owns_index(index_name)) WITH CHECK (nnn.owns_index(index_name));
ALTER TABLE nnn.ann_chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY ann_chunks_read ON nnn.ann_chunks FOR SELECT USING (
    pg_catalog.has_table_privilege((SELECT i.candidates FROM nnn.indexes i WHERE i.name = index_name), 'SELECT'));
CREATE POLICY ann_chunks_owner_write ON nnn.ann_chunks FOR ALL USING (nnn.owns_index(index_name)) WITH CHECK (nnn.owns_index(index_name));
GRANT SELECT, INSERT, UPDATE, DELETE ON nnn.ann, nnn.ann_chunks TO PUBLIC;

-- The change log behind nnn_search's per-backend cache: every statement that writes a
-- candidate table appends the ids it touched, stamped with its transaction id, so a cache built
-- under one snapshot can tell which rows another snapshot may see differently. Insert-only for
-- writers (no contention); a NULL id (TRUNCATE) means every row. Only those who may write the
-- candidate table add entries (its triggers run as the writer), a NULL id only those who may
-- TRUNCATE it; only the table owner may prune (nnn.prune_changes).
CREATE TABLE nnn.changes (
    index_name text NOT NULL,
    id         bigint,
    xid        xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()
);
CREATE INDEX changes_index_name_id ON nnn.changes (index_name, id);
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
ALTER TABLE nnn.changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY changes_read ON nnn.changes FOR SELECT USING (true);
CREATE POLICY changes_append ON nnn.changes FOR INSERT WITH CHECK (nnn.may_log_change(index_name, id));
CREATE POLICY changes_owner_prune ON nnn.changes FOR DELETE USING (
    pg_catalog.pg_has_role((SELECT c.relowner FROM nnn.indexes i JOIN pg_catalog.pg_class c ON c.oid = i.candidates
                            WHERE i.name = index_name), 'USAGE'));
GRANT SELECT, INSERT, DELETE ON nnn.changes TO PUBLIC;

-- Statement-level triggers of an index's candidate table: log the ids a statement touched;
-- inserted rows, and updated rows whose embedding changed, get their bias in one engine call.
CREATE FUNCTION nnn.candidates_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    idx nnn.indexes;
    ids bigint[];
BEGIN
    SELECT * INTO idx FROM nnn.indexes WHERE name = TG_ARGV[0];
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO nnn.changes (index_name, id) VALUES (idx.name, NULL);
        RETURN NULL;
    END IF;
    -- Each id once per transaction: the bias UPDATE that refresh_rows makes below fires this
    -- trigger again for ids this statement has just logged.
    EXECUTE format('INSERT INTO nnn.changes (index_name, id)
                    SELECT DISTINCT $1, t.id FROM (%s) t(id)
                    WHERE NOT EXISTS (SELECT 1 FROM nnn.changes c WHERE c.index_name = $1 AND c.id = t.id
                                        AND c.xid = pg_catalog.pg_current_xact_id())',
                   CASE TG_OP WHEN 'INSERT' THEN format('SELECT %1$I FROM nnn_new', idx.id_column)
                              WHEN 'DELETE' THEN format('SELECT %1$I FROM nnn_old', idx.id_column)
                              ELSE format('SELECT %1$I FROM nnn_old UNION SELECT %1$I FROM nnn_new', idx.id_column)
                   END)
        USING idx.name;
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT array_agg(%1$I::bigint) FROM nnn_new', idx.id_column) INTO ids;
    ELSIF TG_OP = 'UPDATE' THEN
        EXECUTE format('SELECT array_agg(n.%1$I::bigint) FROM nnn_new n LEFT JOIN nnn_old o ON o.%1$I = n.%1$I
                        WHERE o.%1$I IS NULL OR n.%2$I IS DISTINCT FROM o.%2$I',
                       idx.id_column, idx.embedding_column) INTO ids;
    END IF;
    IF ids IS NOT NULL THEN
        PERFORM nnn.refresh_rows(idx.name, ids);
    END IF;
    RETURN NULL;
END
$$;

-- Empties the change log of an index; bumping log_epoch in the same transaction makes every
-- backend's cache of it rebuild, so no cache ever misses a pruned entry. Entries that the
-- index's Faiss structure (nnn.ann) has not absorbed yet stay: it is searched through them.
CREATE FUNCTION nnn.prune_changes(index_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    UPDATE nnn.indexes SET log_epoch = log_epoch + 1 WHERE name = prune_changes.index_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'nnn index "%" does not exist or is not yours', prune_changes.index_name
            USING HINT = 'Only members of the candidate table''s owner role can prune its change log.';
    END IF;
    DELETE FROM nnn.changes c WHERE c.index_name = prune_changes.index_name
        AND NOT EXISTS (SELECT 1 FROM nnn.ann a
                        WHERE a.index_name = c.index_name AND a.snapshot IS NOT NULL
                          AND NOT pg_catalog.pg_visible_in_snapshot(c.xid, a.snapshot)
                          AND c.xid IS DISTINCT FROM a.build_xid);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Dropping a candidate table forgets its index. SECURITY DEFINER because the table owner
-- can no longer be looked up once it is gone; it only deletes rows of nnn.indexes.
CREATE FUNCTION nnn.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM nnn.indexes i
    USING pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND d.objid = i.candidates::oid;
END
$$;
CREATE EVENT TRIGGER nnn_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION nnn.forget_dropped_tables();
