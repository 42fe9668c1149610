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
    built_at            timestamptz
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

-- Statement-level trigger of an index's candidate table: the ids of inserted rows, and of
-- updated rows whose embedding changed, get their bias in one engine call.
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
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('SELECT array_agg(%1$I::bigint) FROM nnn_new', idx.id_column) INTO ids;
    ELSE
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

-- Dropping a candidate table forgets its index. SECURITY DEFINER because the table owner
-- can no longer be looked up once it is gone; it only deletes rows of nnn.indexes.
CREATE FUNCTION nnn.forget_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM nnn.indexes i
    USING pg_catalog.pg_event_trigger_dropped_objects() d
    WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = i.candidates::oid;
END
$$;
CREATE EVENT TRIGGER nnn_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION nnn.forget_dropped_tables();
