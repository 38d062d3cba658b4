-- 0006_retention.sql: the opt-in retention policy's one privileged step.
--
-- prefstore.compact_stream() replaces the events of a user's stream up to a version V (the last
-- event recorded before the retention cut-off) by one baseline event (PreferencesBaseline) at V,
-- in the caller's transaction:
--   1. it appends a StreamCompacted record to the audit stream "$audit" (who, when, why, how
--      many events, the chain head at V), which is what lets the append-only trigger of
--      migration 0004 pass the DELETE of exactly those events;
--   2. deletes the stream's events with version <= V;
--   3. inserts the baseline at version V with event V's global_position, recorded_at and
--      transaction_id, so catch-up readers past V never see it as new and as-of reads by
--      position or time at or after V still work; the chain trigger gives it the chain hash of
--      event V (its payload's chain_head), so the link of event V + 1 still holds;
--   4. points the preferences_current rows set at or before V at the baseline (what a rebuild
--      of that read model from the log now gives), and deletes the stream's snapshots (they
--      name removed events; the snapshot policy writes new ones).
-- The caller (prefstore compact, storage/src/retention.cpp) locks the stream row, refuses when
-- an asynchronous projection has read only part of the events up to V, and folds the baseline's
-- preferences from the log in the same transaction. Nothing runs by itself: retention is opt-in.
--
-- Never edit this file once released. docs/schema.md describes every object created here.

CREATE FUNCTION prefstore.compact_stream(p_stream_id text, p_up_to_version bigint,
                                         p_baseline_payload jsonb, p_baseline_event_id uuid,
                                         p_older_than timestamptz, p_reason text, p_actor text,
                                         p_event_id uuid)
    RETURNS TABLE (audit_position bigint, events bigint, first_version bigint,
                   chain_head bytea, baseline_position bigint, already_compacted boolean)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    v_first bigint;
    v_position bigint;
    v_recorded_at timestamptz;
    v_transaction_id xid8;
    v_chain_hash bytea;
    v_events bigint;
    v_deleted bigint;
    v_audit_version bigint;
    v_audit_recorded_at timestamptz;
    v_audit_position bigint;
    v_payload jsonb;
    v_metadata jsonb;
BEGIN
    IF p_stream_id IS NULL OR p_stream_id = '' OR left(p_stream_id, 1) = '$' THEN
        RAISE EXCEPTION 'cannot compact stream %: only users'' streams can be compacted',
                        coalesce(quote_literal(p_stream_id), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_reason IS NULL OR btrim(p_reason) = '' THEN
        RAISE EXCEPTION 'compacting stream % needs a reason', quote_literal(p_stream_id)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_event_id IS NULL OR p_baseline_event_id IS NULL OR p_older_than IS NULL
       OR p_up_to_version IS NULL OR p_baseline_payload IS NULL THEN
        RAISE EXCEPTION 'compacting stream % needs a version, a baseline payload, a cut-off and '
                        'event ids for the audit record and the baseline',
                        quote_literal(p_stream_id)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A retry of a compaction that committed returns the stored record.
    SELECT e.global_position, e.payload INTO v_audit_position, v_payload
    FROM prefstore.events e
    WHERE e.stream_id = '$audit' AND e.event_id = p_event_id;
    IF FOUND THEN
        IF v_payload->>'stream_id' IS DISTINCT FROM p_stream_id
           OR (v_payload->>'up_to_version')::bigint IS DISTINCT FROM p_up_to_version THEN
            RAISE EXCEPTION 'event id % is already the audit record of another operation',
                            p_event_id
                USING ERRCODE = 'unique_violation';
        END IF;
        RETURN QUERY
            SELECT v_audit_position, (v_payload->>'events')::bigint,
                   p_up_to_version - (v_payload->>'events')::bigint + 1,
                   decode(v_payload->>'chain_head', 'hex'),
                   (SELECT b.global_position FROM prefstore.events b
                    WHERE b.stream_id = p_stream_id AND b.stream_version = p_up_to_version
                      AND b.event_type = 'PreferencesBaseline'),
                   true;
        RETURN;
    END IF;

    PERFORM FROM prefstore.streams s WHERE s.stream_id = p_stream_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream % does not exist', quote_literal(p_stream_id)
            USING ERRCODE = 'no_data_found';
    END IF;

    SELECT min(e.stream_version) INTO v_first
    FROM prefstore.events e WHERE e.stream_id = p_stream_id;
    SELECT e.global_position, e.recorded_at, e.transaction_id, e.chain_hash
    INTO v_position, v_recorded_at, v_transaction_id, v_chain_hash
    FROM prefstore.events e
    WHERE e.stream_id = p_stream_id AND e.stream_version = p_up_to_version;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cannot compact stream % up to version %: no such event (the stream '
                        'holds versions % to %)', quote_literal(p_stream_id), p_up_to_version,
                        coalesce(v_first, 0),
                        (SELECT s.version FROM prefstore.streams s
                         WHERE s.stream_id = p_stream_id)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A baseline takes its chain hash from its payload only when its predecessor is gone; at
    -- version 1 the chain trigger would hash it instead. And one event into one baseline gains
    -- nothing.
    IF p_up_to_version <= v_first THEN
        RAISE EXCEPTION 'cannot compact stream % up to version %: its first stored event is '
                        'version %, and a baseline must replace at least two events',
                        quote_literal(p_stream_id), p_up_to_version, v_first
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_recorded_at >= p_older_than THEN
        RAISE EXCEPTION 'cannot compact stream % up to version %: that event was recorded at '
                        '%, not before the cut-off %', quote_literal(p_stream_id),
                        p_up_to_version, v_recorded_at, p_older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_events := p_up_to_version - v_first + 1;
    IF jsonb_typeof(p_baseline_payload) IS DISTINCT FROM 'object'
       OR jsonb_typeof(p_baseline_payload->'preferences') IS DISTINCT FROM 'array'
       OR p_baseline_payload->>'chain_head' IS DISTINCT FROM encode(v_chain_hash, 'hex')
       OR p_baseline_payload->>'compacted_events' IS DISTINCT FROM v_events::text THEN
        RAISE EXCEPTION 'the baseline of stream % at version % does not fit the log',
                        quote_literal(p_stream_id), p_up_to_version
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('A baseline payload needs "preferences" (an array), '
                                  '"chain_head" %s (the chain hash of version %s) and '
                                  '"compacted_events" %s.',
                                  encode(v_chain_hash, 'hex'), p_up_to_version, v_events);
    END IF;

    -- 1. The audit record, which also authorises the DELETE below (forbid_event_changes()).
    INSERT INTO prefstore.streams AS st (stream_id, version, created_at, updated_at,
                                         last_recorded_at)
    VALUES ('$audit', 1, now(), now(), clock_timestamp())
    ON CONFLICT (stream_id) DO UPDATE
        SET version = st.version + 1, updated_at = now(),
            last_recorded_at = greatest(clock_timestamp(), st.last_recorded_at)
    RETURNING st.version, st.last_recorded_at INTO v_audit_version, v_audit_recorded_at;

    v_payload := jsonb_build_object(
        'stream_id', p_stream_id,
        'up_to_version', p_up_to_version,
        'events', v_events,
        'older_than', to_char(p_older_than AT TIME ZONE 'UTC',
                              'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'chain_head', encode(v_chain_hash, 'hex'));
    v_metadata := jsonb_strip_nulls(jsonb_build_object('actor', NULLIF(p_actor, ''),
                                                       'reason', p_reason));
    INSERT INTO prefstore.events (stream_id, stream_version, event_id, event_type,
                                  schema_version, payload, metadata, recorded_at)
    VALUES ('$audit', v_audit_version, p_event_id, 'StreamCompacted', 1, v_payload, v_metadata,
            v_audit_recorded_at)
    RETURNING global_position INTO v_audit_position;

    -- 2. The events up to V.
    DELETE FROM prefstore.events e
    WHERE e.stream_id = p_stream_id AND e.stream_version <= p_up_to_version;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    IF v_deleted <> v_events THEN
        RAISE EXCEPTION 'stream % has % events up to version %, expected %',
                        quote_literal(p_stream_id), v_deleted, p_up_to_version, v_events
            USING ERRCODE = 'data_corrupted';
    END IF;

    -- 3. The baseline in event V's place (the chain trigger sets chain_hash from chain_head).
    --    Its causation_id names the audit record.
    INSERT INTO prefstore.events (global_position, stream_id, stream_version, event_id,
                                  event_type, schema_version, payload, metadata, recorded_at,
                                  transaction_id)
    OVERRIDING SYSTEM VALUE
    VALUES (v_position, p_stream_id, p_up_to_version, p_baseline_event_id,
            'PreferencesBaseline', 1, p_baseline_payload,
            v_metadata || jsonb_build_object('causation_id', p_event_id::text),
            v_recorded_at, v_transaction_id);

    -- 4. Read models and caches that pointed into the removed history.
    UPDATE prefstore.preferences_current p
    SET version = p_up_to_version, updated_at = v_recorded_at, updated_by = NULLIF(p_actor, ''),
        last_position = v_position
    WHERE p.stream_id = p_stream_id AND p.version <= p_up_to_version;
    -- Every snapshot goes: those below V describe history that is gone, and those at or above it
    -- name (in their entries) the events that set each key, some of which are gone too. The
    -- snapshot policy writes new ones from the baseline on.
    DELETE FROM prefstore.snapshots s WHERE s.stream_id = p_stream_id;
    PERFORM pg_notify('prefstore_events', '');

    RETURN QUERY SELECT v_audit_position, v_events, v_first, v_chain_hash, v_position, false;
END
$function$;

COMMENT ON FUNCTION prefstore.compact_stream(text, bigint, jsonb, uuid, timestamptz, text, text,
                                             uuid) IS
    'Retention, in the caller''s transaction: replaces the events of a user''s stream up to '
    'p_up_to_version (at least its first stored version + 1, recorded before p_older_than) by '
    'one PreferencesBaseline event at that version with payload p_baseline_payload (chain_head: '
    'the chain hash of that version in hex; compacted_events: the events removed; preferences: '
    'the state then, folded by the caller) and event id p_baseline_event_id, which keeps that '
    'event''s global_position, recorded_at, transaction_id and chain hash. First appends a '
    'StreamCompacted record to "$audit" (stream_id, up_to_version, events, older_than, '
    'chain_head; metadata actor and reason; event id p_event_id; the baseline''s causation_id), '
    'then deletes the events, inserts the baseline, points the preferences_current rows set at '
    'or before that version at the baseline and deletes the stream''s snapshots. The caller '
    'locks the stream row first and checks that no asynchronous projection has read only part '
    'of the events removed. A retry with the same p_event_id returns the stored record '
    '(already_compacted true). Errors: invalid_parameter_value (a "$" stream, no reason, no such '
    'version, fewer than two events, an event not before the cut-off, a baseline payload that '
    'does not fit), no_data_found (no such stream), unique_violation (p_event_id used by another '
    'operation). EXECUTE: prefstore_owner only.';

REVOKE ALL ON FUNCTION prefstore.compact_stream(text, bigint, jsonb, uuid, timestamptz, text,
                                                text, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prefstore.compact_stream(text, bigint, jsonb, uuid, timestamptz, text,
                                                   text, uuid) TO prefstore_owner;

SELECT prefstore.assign_owner();
