-- 0009_move_keeps_chain.sql: moving a store to Citus keeps the hash chain as stored.
--
-- `prefstore migrate --distributed` on a store that already holds events (moving a running
-- single-server store to Citus, docs/scaling.md) copies every event into its shard, where the
-- BEFORE INSERT triggers of prefstore.events fire again. The chain trigger recomputed each
-- event's chain hash from its predecessor, which the copy does not insert in version order: a
-- stream whose versions lay out of order in the table's pages stopped the move with "event
-- version N of stream S has no predecessor in the log" (found by
-- Citus.MovingARunningSingleServerStoreKeepsEveryEventAndItsProjectionsGoOn).
--
-- During the move (the setting prefstore.moving_store is on, which distribute() sets for its
-- own transaction and Citus passes to the workers' copy) a row that comes with a chain hash
-- keeps it, if the role inserting it is a member of prefstore_owner (which owns the table and
-- could disable the trigger anyway). `prefstore verify` recomputes every chain either way.
-- Every other insert is unchanged: the setting is read only when the row brings a hash, which
-- prefstore's appends never do.
--
-- Never edit this file once released. docs/schema.md describes every object changed here.

CREATE OR REPLACE FUNCTION prefstore.chain_event()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    previous bytea;
BEGIN
    IF NEW.chain_hash IS NOT NULL THEN
        IF current_setting('prefstore.moving_store', true) = 'on'
           AND pg_has_role(current_user, 'prefstore_owner', 'MEMBER') THEN
            RETURN NEW;  -- a moved event keeps its stored link
        END IF;
    END IF;
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
    'baseline (PreferencesBaseline), which keeps the chain hash of the event it replaces, and '
    'an event moved to a Citus shard by prefstore migrate --distributed (the setting '
    'prefstore.moving_store on, inserted by a member of prefstore_owner), which keeps its own '
    '(migration 0009).';

SELECT prefstore.assign_owner();
