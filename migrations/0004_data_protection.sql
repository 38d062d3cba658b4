-- 0004_data_protection.sql: tamper evidence and the one privileged path that may remove events.
--
--   1. prefstore_owner owns every object of schema prefstore (when the role running the
--      migration may hand them over), so DDL and erasure need that role, not a superuser; and
--      the roles nest (reader < writer < owner), so a login may drop to a smaller one per task.
--   2. A hash chain per stream: events.chain_hash = SHA-256(chain_hash of the stream's previous
--      event || canonical bytes of this event), computed by a trigger on every insert, whoever
--      inserts. prefstore verify recomputes it independently (OpenSSL) and names the first
--      event that does not match.
--   3. Erasure and retention: the append-only trigger lets a DELETE through only when the same
--      transaction has written the matching record into prefstore's audit stream "$audit"
--      (StreamErased or StreamCompacted), and only prefstore_owner holds DELETE on the log.
--      prefstore.erase_stream() is that path for the right to erasure.
--
-- Never edit this file once released. docs/schema.md describes every object created here.

-------------------------------------------------------------------------------------------------
-- 1. Ownership
-------------------------------------------------------------------------------------------------

CREATE FUNCTION prefstore.assign_owner()
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    r record;
BEGIN
    IF NOT pg_catalog.pg_has_role(current_user, 'prefstore_owner', 'MEMBER') THEN
        RAISE NOTICE 'role % is not a member of prefstore_owner: prefstore''s objects keep '
                     'their owner', current_user;
        RETURN;
    END IF;
    EXECUTE 'ALTER SCHEMA prefstore OWNER TO prefstore_owner';
    -- Tables, views and sequences (an identity sequence follows its table).
    FOR r IN
        SELECT c.oid::regclass AS name, c.relkind
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'prefstore' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                          WHERE d.classid = 'pg_catalog.pg_class'::regclass
                            AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO prefstore_owner',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE'
                                      WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      ELSE 'TABLE' END,
                       r.name);
    END LOOP;
    FOR r IN
        SELECT p.oid::regprocedure AS name, p.prokind
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'prefstore'
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO prefstore_owner',
                       CASE r.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE'
                                      ELSE 'FUNCTION' END,
                       r.name);
    END LOOP;
END
$function$;

COMMENT ON FUNCTION prefstore.assign_owner() IS
    'Makes prefstore_owner the owner of schema prefstore and of every table, view, sequence and '
    'function in it, when the current role is a member of prefstore_owner (otherwise a NOTICE '
    'and nothing changes). Called at the end of migrations that create objects; idempotent.';

-------------------------------------------------------------------------------------------------
-- 2. Hash chain
-------------------------------------------------------------------------------------------------

CREATE FUNCTION prefstore.event_canonical_bytes(
    p_global_position bigint, p_stream_id text, p_stream_version bigint, p_event_id uuid,
    p_event_type text, p_schema_version integer, p_recorded_at timestamptz, p_payload jsonb,
    p_metadata jsonb)
    RETURNS bytea
    LANGUAGE sql
    STABLE PARALLEL SAFE STRICT
    SET search_path = pg_catalog, pg_temp
RETURN convert_to(
    'prefstore-event-v1' || E'\n' ||
    p_global_position::text || E'\n' ||
    p_stream_id || E'\n' ||
    p_stream_version::text || E'\n' ||
    p_event_id::text || E'\n' ||
    p_event_type || E'\n' ||
    p_schema_version::text || E'\n' ||
    ((extract(epoch FROM p_recorded_at) * 1000000)::bigint)::text || E'\n' ||
    p_payload::text || E'\n' ||
    p_metadata::text,
    'UTF8');

COMMENT ON FUNCTION prefstore.event_canonical_bytes(bigint, text, bigint, uuid, text, integer,
                                                    timestamptz, jsonb, jsonb) IS
    'The bytes of one event that its chain hash covers, as UTF-8: "prefstore-event-v1", '
    'global_position, stream_id, stream_version, event_id (lower-case hex with dashes), '
    'event_type, schema_version, recorded_at in microseconds since 1970-01-01 UTC, payload and '
    'metadata in jsonb''s text form, each followed by a line feed except the last. No field can '
    'hold a raw line feed (stream ids have no control characters; jsonb text escapes them).';

CREATE FUNCTION prefstore.chain_step(p_previous bytea, p_canonical bytea)
    RETURNS bytea
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE STRICT
    SET search_path = pg_catalog, pg_temp
RETURN sha256(p_previous || p_canonical);

COMMENT ON FUNCTION prefstore.chain_step(bytea, bytea) IS
    'One link of a stream''s hash chain: SHA-256 of the previous event''s chain_hash (32 zero '
    'bytes before the first event) followed by the event''s canonical bytes.';

CREATE AGGREGATE prefstore.hash_chain(bytea) (
    SFUNC = prefstore.chain_step,
    STYPE = bytea,
    INITCOND = '\x0000000000000000000000000000000000000000000000000000000000000000'
);

COMMENT ON AGGREGATE prefstore.hash_chain(bytea) IS
    'Folds canonical event bytes into a hash chain from the genesis value (32 zero bytes); as a '
    'window function ordered by stream_version it gives every event''s chain_hash.';

CREATE FUNCTION prefstore.chain_event()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    previous bytea;
BEGIN
    IF NEW.stream_version = 1 THEN
        previous := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    ELSE
        SELECT e.chain_hash INTO previous
        FROM prefstore.events e
        WHERE e.stream_id = NEW.stream_id AND e.stream_version = NEW.stream_version - 1;
        IF previous IS NULL AND NEW.event_type = 'PreferencesBaseline' THEN
            -- A retention baseline takes the place of the events up to its version, which are
            -- gone; it keeps the chain hash of the event it replaces (payload chain_head, also
            -- in the StreamCompacted record of "$audit"), so the next event's link still holds.
            NEW.chain_hash := decode(NEW.payload->>'chain_head', 'hex');
            IF NEW.chain_hash IS NULL OR octet_length(NEW.chain_hash) <> 32 THEN
                RAISE EXCEPTION 'baseline version % of stream % has no valid chain_head',
                                NEW.stream_version, NEW.stream_id
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END IF;
        IF previous IS NULL THEN
            RAISE EXCEPTION 'event version % of stream % has no predecessor in the log',
                            NEW.stream_version, NEW.stream_id
                USING ERRCODE = 'foreign_key_violation',
                      DETAIL = format('An event may only follow version %s of its stream, '
                                      'which is not stored.', NEW.stream_version - 1),
                      HINT = 'Versions of a stream are contiguous: append through prefstore.';
        END IF;
    END IF;
    NEW.chain_hash := prefstore.chain_step(previous, prefstore.event_canonical_bytes(
        NEW.global_position, NEW.stream_id, NEW.stream_version, NEW.event_id, NEW.event_type,
        NEW.schema_version, NEW.recorded_at, NEW.payload, NEW.metadata));
    RETURN NEW;
END
$function$;

COMMENT ON FUNCTION prefstore.chain_event() IS
    'BEFORE INSERT trigger function of prefstore.events: sets chain_hash from the chain hash of '
    'the stream''s previous version (whatever the inserting statement gave) and refuses an '
    'event whose previous version is not stored (foreign_key_violation), except a retention '
    'baseline (PreferencesBaseline), which keeps the chain hash of the event it replaces.';

ALTER TABLE prefstore.events ADD COLUMN chain_hash bytea;

-- Existing events get their chain in one pass. The append-only trigger is off for this UPDATE
-- only, inside this transaction (which holds the table's ACCESS EXCLUSIVE lock meanwhile).
ALTER TABLE prefstore.events DISABLE TRIGGER events_append_only;
UPDATE prefstore.events AS e
SET chain_hash = c.chain_hash
FROM (SELECT stream_id, stream_version,
             prefstore.hash_chain(prefstore.event_canonical_bytes(
                 global_position, stream_id, stream_version, event_id, event_type,
                 schema_version, recorded_at, payload, metadata))
                 OVER (PARTITION BY stream_id ORDER BY stream_version) AS chain_hash
      FROM prefstore.events) AS c
WHERE e.stream_id = c.stream_id AND e.stream_version = c.stream_version;
ALTER TABLE prefstore.events ENABLE TRIGGER events_append_only;

ALTER TABLE prefstore.events
    ALTER COLUMN chain_hash SET NOT NULL,
    ADD CONSTRAINT events_chain_hash_is_sha256 CHECK (octet_length(chain_hash) = 32);

CREATE TRIGGER events_chain
    BEFORE INSERT ON prefstore.events
    FOR EACH ROW EXECUTE FUNCTION prefstore.chain_event();

COMMENT ON COLUMN prefstore.events.chain_hash IS
    'Hash chain of the stream: SHA-256(chain_hash of version - 1, or 32 zero bytes for version '
    '1 || prefstore.event_canonical_bytes(this event)). Set by the trigger events_chain on '
    'insert; prefstore verify recomputes it. A changed event breaks its own link; a removed one '
    'breaks the next.';
COMMENT ON TRIGGER events_chain ON prefstore.events IS
    'Computes chain_hash of every inserted event (prefstore.chain_event()).';

-------------------------------------------------------------------------------------------------
-- 3. The privileged path: erasure and retention
-------------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION prefstore.forbid_event_changes()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF TG_LEVEL = 'ROW' AND TG_OP = 'DELETE' AND left(OLD.stream_id, 1) <> '$' AND EXISTS (
        SELECT FROM prefstore.events a
        WHERE a.transaction_id = pg_current_xact_id()
          AND a.stream_id = '$audit'
          AND a.payload->>'stream_id' = OLD.stream_id
          AND (a.event_type = 'StreamErased'
               OR (a.event_type = 'StreamCompacted'
                   AND OLD.stream_version <= (a.payload->>'up_to_version')::bigint)))
    THEN
        RETURN OLD;
    END IF;
    IF TG_LEVEL = 'ROW' THEN
        RAISE EXCEPTION 'prefstore.events is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('%s of the event at global_position %s (stream_id %L, '
                                  'stream_version %s).',
                                  TG_OP, OLD.global_position, OLD.stream_id, OLD.stream_version),
                  HINT = 'Events are never changed. They are removed only by erasure (prefstore '
                         'erase, prefstore.erase_stream()) or retention (prefstore compact), '
                         'which record what they removed in the stream $audit, as '
                         'prefstore_owner.';
    END IF;
    RAISE EXCEPTION 'prefstore.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s would remove every event of the log.', TG_OP),
              HINT = 'Events are never changed. They are removed only by erasure (prefstore '
                     'erase) or retention (prefstore compact), one stream at a time.';
END
$function$;

COMMENT ON FUNCTION prefstore.forbid_event_changes() IS
    'Trigger function of prefstore.events: raises insufficient_privilege (SQLSTATE 42501) '
    '"prefstore.events is append-only: <operation> is not allowed" for every UPDATE and '
    'TRUNCATE, and for every DELETE except one of a user''s event (not a "$" stream) for which '
    'the same transaction has appended to the stream "$audit" a StreamErased record naming '
    'that stream, or a StreamCompacted record naming it with up_to_version at or above the '
    'event''s version. Only prefstore_owner holds DELETE on the table.';

CREATE FUNCTION prefstore.erase_stream(p_stream_id text, p_reason text, p_actor text,
                                       p_event_id uuid)
    RETURNS TABLE (audit_position bigint, events bigint, stream_version bigint,
                   first_position bigint, last_position bigint, chain_head bytea,
                   already_erased boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    v_version bigint;
    v_audit_version bigint;
    v_recorded_at timestamptz;
    v_payload jsonb;
    v_position bigint;
BEGIN
    IF p_stream_id IS NULL OR p_stream_id = '' OR left(p_stream_id, 1) = '$' THEN
        RAISE EXCEPTION 'cannot erase stream %: only users'' streams can be erased',
                        coalesce(quote_literal(p_stream_id), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'erasing stream % needs a reason', quote_literal(p_stream_id)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_event_id IS NULL THEN
        RAISE EXCEPTION 'erasing stream % needs an event id for its audit record',
                        quote_literal(p_stream_id)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A retry of an erasure that committed returns the stored record.
    SELECT e.global_position, e.payload INTO v_position, v_payload
    FROM prefstore.events e
    WHERE e.stream_id = '$audit' AND e.event_id = p_event_id;
    IF FOUND THEN
        IF v_payload->>'stream_id' IS DISTINCT FROM p_stream_id THEN
            RAISE EXCEPTION 'event id % is already the audit record of another operation',
                            p_event_id
                USING ERRCODE = 'unique_violation';
        END IF;
        RETURN QUERY SELECT v_position, (v_payload->>'events')::bigint,
                            (v_payload->>'stream_version')::bigint,
                            (v_payload->>'first_position')::bigint,
                            (v_payload->>'last_position')::bigint,
                            decode(v_payload->>'chain_head', 'hex'), true;
        RETURN;
    END IF;

    SELECT s.version INTO v_version
    FROM prefstore.streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream % does not exist', quote_literal(p_stream_id)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Nothing was erased. An erased stream has a StreamErased record in '
                         'the stream $audit.';
    END IF;

    SELECT jsonb_build_object(
               'stream_id', p_stream_id,
               'events', count(*),
               'stream_version', v_version,
               'first_position', coalesce(min(e.global_position), 0),
               'last_position', coalesce(max(e.global_position), 0),
               'chain_head', encode(coalesce(
                   (SELECT h.chain_hash FROM prefstore.events h
                    WHERE h.stream_id = p_stream_id AND h.stream_version = v_version),
                   '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea),
                   'hex'))
    INTO v_payload
    FROM prefstore.events e WHERE e.stream_id = p_stream_id;

    INSERT INTO prefstore.streams AS st (stream_id, version, created_at, updated_at,
                                         last_recorded_at)
    VALUES ('$audit', 1, now(), now(), clock_timestamp())
    ON CONFLICT (stream_id) DO UPDATE
        SET version = st.version + 1, updated_at = now(),
            last_recorded_at = greatest(clock_timestamp(), st.last_recorded_at)
    RETURNING st.version, st.last_recorded_at INTO v_audit_version, v_recorded_at;

    INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type,
                                  schema_version, payload, metadata, recorded_at)
    VALUES ('$audit', v_audit_version, p_event_id, 'StreamErased', 1, v_payload,
            jsonb_strip_nulls(jsonb_build_object('actor', NULLIF(p_actor, ''),
                                                 'reason', p_reason)),
            v_recorded_at)
    RETURNING global_position INTO v_position;

    DELETE FROM prefstore.events WHERE stream_id = p_stream_id;
    DELETE FROM prefstore.snapshots WHERE stream_id = p_stream_id;
    DELETE FROM prefstore.preferences_current WHERE stream_id = p_stream_id;
    DELETE FROM prefstore.streams WHERE stream_id = p_stream_id;
    PERFORM pg_notify('prefstore_events', '');

    RETURN QUERY SELECT v_position, (v_payload->>'events')::bigint, v_version,
                        (v_payload->>'first_position')::bigint,
                        (v_payload->>'last_position')::bigint,
                        decode(v_payload->>'chain_head', 'hex'), false;
END
$function$;

COMMENT ON FUNCTION prefstore.erase_stream(text, text, text, uuid) IS
    'Right to erasure, the one path that removes a user: appends a StreamErased record to the '
    'stream "$audit" (stream_id, number of events, last version, first and last position, chain '
    'head; metadata actor and reason; event id p_event_id) and deletes the user''s events, '
    'snapshots, current preferences and stream row, in the caller''s transaction. Read models '
    'of asynchronous projections are the caller''s to clear. A retry with the same event id '
    'returns the stored record (already_erased true). Errors: invalid_parameter_value (a "$" '
    'stream, no reason, no such stream). EXECUTE: prefstore_owner only.';

REVOKE ALL ON FUNCTION prefstore.assign_owner() FROM PUBLIC;
REVOKE ALL ON FUNCTION prefstore.erase_stream(text, text, text, uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION prefstore.chain_event() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prefstore.erase_stream(text, text, text, uuid) TO prefstore_owner;
GRANT EXECUTE ON FUNCTION prefstore.assign_owner() TO prefstore_owner;
-- The trigger functions run as the inserting role; verify and the audit view use the others.
GRANT EXECUTE ON FUNCTION prefstore.chain_event(),
    prefstore.event_canonical_bytes(bigint, text, bigint, uuid, text, integer, timestamptz,
                                    jsonb, jsonb),
    prefstore.chain_step(bytea, bytea)
    TO prefstore_owner, prefstore_writer, prefstore_reader;
GRANT EXECUTE ON FUNCTION prefstore.hash_chain(bytea)
    TO prefstore_owner, prefstore_writer, prefstore_reader;

-- The roles nest: reader < writer < owner. A login role granted prefstore_owner (a DBA) may
-- also work as the writer or the reader, and a writer's login as the reader, which is what
-- switching to the role of each task (PoolOptions::role) needs. Memberships are cluster-wide,
-- like the roles: another database may be granting them at the same moment (ignored).
DO $do$
BEGIN
    IF NOT pg_catalog.pg_has_role('prefstore_writer', 'prefstore_reader', 'MEMBER') THEN
        GRANT prefstore_reader TO prefstore_writer;
    END IF;
EXCEPTION WHEN unique_violation OR duplicate_object THEN
    NULL;
END
$do$;

DO $do$
BEGIN
    IF NOT pg_catalog.pg_has_role('prefstore_owner', 'prefstore_writer', 'MEMBER') THEN
        GRANT prefstore_writer TO prefstore_owner;
    END IF;
EXCEPTION WHEN unique_violation OR duplicate_object THEN
    NULL;
END
$do$;

SELECT prefstore.assign_owner();
