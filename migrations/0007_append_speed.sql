-- 0007_append_speed.sql: the hash chain trigger of migration 0004, at a third of its cost.
--
-- The performance issue measured the BEFORE INSERT trigger prefstore.chain_event() at about
-- 93 µs per event (pg_stat_user_functions, track_functions = all), most of it call overhead:
-- it called two SQL functions per event, prefstore.chain_step() and
-- prefstore.event_canonical_bytes(), and all three carried `SET search_path`, which makes every
-- call save and restore the setting and keeps a SQL function from being inlined (the call then
-- reads the function's stored body anew: pg_strtok and nodeRead led the server's profile).
-- Now the trigger computes the same bytes and hash in one expression and carries no SET clause;
-- the helpers lose theirs too, so verification queries can inline them.
--
-- Why dropping `SET search_path` is safe here: the helpers have SQL-standard bodies (RETURN
-- ...), parsed once when created, so the search path at call time does not change what they
-- call. The trigger names its one table with its schema (prefstore.events), and calls only
-- built-in functions and operators on built-in types: pg_catalog is searched before any schema
-- of the search path when the path does not name it, and pg_temp is never searched for
-- functions or operators, so no object a user creates can stand in for them.
--
-- The chain itself does not change: the hash is still SHA-256(previous chain hash || the
-- event's canonical bytes), byte for byte what prefstore.event_canonical_bytes() documents, and
-- `prefstore verify` (which recomputes the chain with prefstore.hash_chain()) checks every event
-- written before and after this migration alike.
--
-- Never edit this file once released. docs/schema.md describes every object changed here.

CREATE OR REPLACE FUNCTION prefstore.chain_event()
    RETURNS trigger
    LANGUAGE plpgsql
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
    -- prefstore.chain_step(previous, prefstore.event_canonical_bytes(...)), written out.
    NEW.chain_hash := sha256(previous || convert_to(
        'prefstore-event-v1' || E'\n' ||
        NEW.global_position::text || E'\n' ||
        NEW.stream_id || E'\n' ||
        NEW.stream_version::text || E'\n' ||
        NEW.event_id::text || E'\n' ||
        NEW.event_type || E'\n' ||
        NEW.schema_version::text || E'\n' ||
        ((extract(epoch FROM NEW.recorded_at) * 1000000)::bigint)::text || E'\n' ||
        NEW.payload::text || E'\n' ||
        NEW.metadata::text,
        'UTF8'));
    RETURN NEW;
END
$function$;

COMMENT ON FUNCTION prefstore.chain_event() IS
    'BEFORE INSERT trigger function of prefstore.events: sets chain_hash from the chain hash of '
    'the stream''s previous version (whatever the inserting statement gave) and refuses an '
    'event whose previous version is not stored (foreign_key_violation), except a retention '
    'baseline (PreferencesBaseline), which keeps the chain hash of the event it replaces. '
    'Computes chain_step(previous, event_canonical_bytes(..)) in one expression (migration 0007).';

ALTER FUNCTION prefstore.event_canonical_bytes(bigint, text, bigint, uuid, text, integer,
                                               timestamptz, jsonb, jsonb) RESET search_path;
ALTER FUNCTION prefstore.chain_step(bytea, bytea) RESET search_path;

SELECT prefstore.assign_owner();
