-- 0005_audit_queries.sql: the audit trail. Indexes so that every filter of an audit query
-- (Store::audit, `prefstore history`) is served by an index in the keyset order of the query
-- (global_position), and a readable view of the log for psql and BI tools.
--
-- Audit queries filter by user (stream_id), key or key prefix, actor, source service, event
-- type, correlation id, time range and position range, and page by global_position (a keyset
-- cursor, never OFFSET). Each index below costs every append that it covers one more index
-- insertion; each comment says what it serves and what it costs. docs/schema.md ("Audit
-- queries") shows the plan of every query shape on a log of 1,000,000 events.
--
-- Never edit this file once released. docs/schema.md describes every object created here.

-------------------------------------------------------------------------------------------------
-- Functions: the keys of an event, and a JSON value as text
-------------------------------------------------------------------------------------------------

-- SQL-standard bodies (RETURN ...) are parsed when the function is created, so a caller's
-- search_path cannot change what they mean; no SET clause, so they stay cheap per row.
CREATE FUNCTION prefstore.event_keys(p_event_type text, p_payload jsonb)
    RETURNS text[]
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE
    WHEN p_payload ? 'key' THEN ARRAY[p_payload ->> 'key']
    WHEN p_event_type = 'PreferencesRestored'
         AND jsonb_typeof(p_payload -> 'changes') = 'array' THEN
        ARRAY(SELECT c.value ->> 'key'
              FROM jsonb_array_elements(p_payload -> 'changes') WITH ORDINALITY AS c(value, n)
              ORDER BY c.n)
    WHEN p_event_type = 'PreferencesBaseline'
         AND jsonb_typeof(p_payload -> 'preferences') = 'array' THEN
        ARRAY(SELECT c.value ->> 'key'
              FROM jsonb_array_elements(p_payload -> 'preferences') WITH ORDINALITY AS c(value, n)
              ORDER BY c.n)
    ELSE '{}'::text[]
END;

COMMENT ON FUNCTION prefstore.event_keys(text, jsonb) IS
    'The preference keys an event is about, in payload order: the payload''s "key" for '
    'PreferenceSet, PreferenceReset, PreferenceDefined and PreferenceDeprecated; every '
    '"changes"[].key of a PreferencesRestored and every "preferences"[].key of a '
    'PreferencesBaseline; an empty array for other events. Immutable (the payload alone decides).';

CREATE FUNCTION prefstore.json_value_text(p_value jsonb)
    RETURNS text
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE jsonb_typeof(p_value) WHEN 'string' THEN p_value #>> '{}' ELSE p_value::text END;

COMMENT ON FUNCTION prefstore.json_value_text(jsonb) IS
    'A preference value for people: a JSON string without its quotes (Europe/London), any '
    'other JSON value as its JSON text (30, true, ["email", "push"]).';

CREATE FUNCTION prefstore.event_value_text(p_event_type text, p_payload jsonb)
    RETURNS text
    LANGUAGE sql
    IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE p_event_type
    WHEN 'PreferenceSet' THEN prefstore.json_value_text(p_payload -> 'value')
    WHEN 'PreferenceDefined' THEN
        (p_payload ->> 'type') || COALESCE(', default ' ||
            prefstore.json_value_text(NULLIF(p_payload -> 'default', 'null'::jsonb)), '')
    WHEN 'PreferenceDeprecated' THEN p_payload ->> 'note'
    WHEN 'PreferencesRestored' THEN
        CASE WHEN jsonb_typeof(p_payload -> 'changes') = 'array' THEN
            (SELECT string_agg((c.value ->> 'key') || ' = ' ||
                                   COALESCE(prefstore.json_value_text(c.value -> 'value'),
                                            '(default)'),
                               '; ' ORDER BY c.n)
             FROM jsonb_array_elements(p_payload -> 'changes') WITH ORDINALITY AS c(value, n))
        END
    WHEN 'PreferencesBaseline' THEN
        CASE WHEN jsonb_typeof(p_payload -> 'preferences') = 'array' THEN
            (SELECT string_agg((c.value ->> 'key') || ' = ' ||
                                   prefstore.json_value_text(c.value -> 'value'),
                               '; ' ORDER BY c.n)
             FROM jsonb_array_elements(p_payload -> 'preferences') WITH ORDINALITY AS c(value, n))
        END
    ELSE NULL
END;

COMMENT ON FUNCTION prefstore.event_value_text(text, jsonb) IS
    'What an event set, for people: the new value of a PreferenceSet; "key = value" pairs of a '
    'PreferencesRestored or PreferencesBaseline, separated by "; " ((default) for a key put back '
    'to its default); the type and default of a PreferenceDefined; the note of a '
    'PreferenceDeprecated; NULL for PreferenceReset and other events.';

-------------------------------------------------------------------------------------------------
-- Indexes of the audit queries. Every one ends in global_position (or is a BRIN on time), so
-- a page is an ordered index scan that stops after LIMIT rows: no sort of everything matching.
-------------------------------------------------------------------------------------------------

CREATE INDEX events_stream_id_global_position_idx
    ON prefstore.events (stream_id, global_position);

CREATE INDEX events_key_global_position_idx
    ON prefstore.events (((payload ->> 'key') COLLATE "C"), global_position);

CREATE INDEX events_multi_key_global_position_idx
    ON prefstore.events (global_position)
    WHERE NOT (payload ? 'key');

CREATE INDEX events_event_type_global_position_idx
    ON prefstore.events (event_type, global_position)
    WHERE event_type <> 'PreferenceSet';

CREATE INDEX events_actor_global_position_idx
    ON prefstore.events ((metadata ->> 'actor'), global_position)
    WHERE (metadata ->> 'actor') <> '';

CREATE INDEX events_source_global_position_idx
    ON prefstore.events ((metadata ->> 'source'), global_position)
    WHERE (metadata ->> 'source') <> '';

CREATE INDEX events_correlation_id_global_position_idx
    ON prefstore.events ((metadata ->> 'correlation_id'), global_position)
    WHERE (metadata ->> 'correlation_id') <> '';

CREATE INDEX events_recorded_at_brin_idx
    ON prefstore.events USING brin (recorded_at);

COMMENT ON INDEX prefstore.events_stream_id_global_position_idx IS
    '(stream_id, global_position). Serves audit queries by user: WHERE stream_id = $1 AND '
    'global_position < $2 ORDER BY global_position DESC LIMIT $3 (and the oldest-first form). '
    'Costs one btree insertion on every append.';
COMMENT ON INDEX prefstore.events_key_global_position_idx IS
    '((payload->>''key'') COLLATE "C", global_position). Serves audit queries by key (equality: '
    'an ordered scan) and by key prefix (a range in byte order: key >= prefix AND key < the '
    'prefix with its last character incremented) over the events about one key (set, reset, '
    'defined, deprecated). Costs one btree insertion on every append; events without a '
    'top-level key (restores) are stored with a NULL key.';
COMMENT ON INDEX prefstore.events_multi_key_global_position_idx IS
    '(global_position) WHERE NOT (payload ? ''key''). The events about several keys or none '
    '(PreferencesRestored, PreferencesBaseline, audit records) in position order, so a key or '
    'key-prefix query also finds them: it scans these rare events and checks '
    'prefstore.event_keys(). Costs an insertion only for such events.';
COMMENT ON INDEX prefstore.events_event_type_global_position_idx IS
    '(event_type, global_position) WHERE event_type <> ''PreferenceSet''. Serves audit queries '
    'by a rare event type (PreferenceReset, PreferencesRestored, definitions, ...). '
    'PreferenceSet, most of the log, is left out: a scan of events_global_position_idx finds '
    'its events at almost every row. Costs an insertion only for events of other types.';
COMMENT ON INDEX prefstore.events_actor_global_position_idx IS
    '((metadata->>''actor''), global_position) WHERE the actor is not empty. Serves audit '
    'queries by actor. Costs one btree insertion on every append that names an actor.';
COMMENT ON INDEX prefstore.events_source_global_position_idx IS
    '((metadata->>''source''), global_position) WHERE the source is not empty. Serves audit '
    'queries by source service. Costs one btree insertion on every append that names a source.';
COMMENT ON INDEX prefstore.events_correlation_id_global_position_idx IS
    '((metadata->>''correlation_id''), global_position) WHERE the correlation id is not empty. '
    'Serves audit queries by correlation id (the events of one request or workflow). Costs an '
    'insertion only for appends that carry a correlation id.';
COMMENT ON INDEX prefstore.events_recorded_at_brin_idx IS
    'BRIN (recorded_at). Serves audit queries by time range: recorded_at follows the order in '
    'which rows are appended (the database clock at insert), so the summary of each block range '
    'is narrow. Nearly free on append (a range summary is widened at most), a few pages in size.';

-- The planner keeps statistics on the expression of a partial index only for the rows the index
-- holds, and does not use them for the whole table; these give it the distribution of the
-- metadata fields (how common each actor, source or correlation id is), so it can tell a rare
-- value from a frequent one. They cost nothing on append, only at ANALYZE.
CREATE STATISTICS prefstore.events_actor_stats ON (metadata ->> 'actor') FROM prefstore.events;
CREATE STATISTICS prefstore.events_source_stats ON (metadata ->> 'source') FROM prefstore.events;
CREATE STATISTICS prefstore.events_correlation_id_stats
    ON (metadata ->> 'correlation_id') FROM prefstore.events;

COMMENT ON STATISTICS prefstore.events_actor_stats IS
    'Distribution of metadata->>''actor'' over all events, for the planner''s estimates of audit '
    'queries by actor.';
COMMENT ON STATISTICS prefstore.events_source_stats IS
    'Distribution of metadata->>''source'' over all events, for the planner''s estimates of '
    'audit queries by source.';
COMMENT ON STATISTICS prefstore.events_correlation_id_stats IS
    'Distribution of metadata->>''correlation_id'' over all events, for the planner''s estimates '
    'of audit queries by correlation id.';

-------------------------------------------------------------------------------------------------
-- The readable audit trail
-------------------------------------------------------------------------------------------------

CREATE VIEW prefstore.audit_log WITH (security_invoker = true) AS
SELECT e.global_position AS position,
       e.recorded_at,
       e.stream_id,
       e.stream_version AS version,
       e.event_type,
       array_to_string(prefstore.event_keys(e.event_type, e.payload), ', ') AS key,
       prefstore.event_value_text(e.event_type, e.payload) AS value,
       NULLIF(e.metadata ->> 'actor', '') AS actor,
       NULLIF(e.metadata ->> 'source', '') AS source,
       NULLIF(e.metadata ->> 'reason', '') AS reason,
       NULLIF(e.metadata ->> 'correlation_id', '') AS correlation_id,
       NULLIF(e.metadata ->> 'causation_id', '') AS causation_id,
       e.event_id
FROM prefstore.events AS e;

COMMENT ON VIEW prefstore.audit_log IS
    'The audit trail for people, psql and BI tools: one row per event of prefstore.events, '
    'saying who (actor) changed what (key, value) when (recorded_at), from where (source) and '
    'why (reason). Runs with the caller''s privileges (security_invoker). Filter by position '
    'and order by position for speed: SELECT * FROM prefstore.audit_log WHERE stream_id = ''ada'' '
    'ORDER BY position DESC LIMIT 50.';
COMMENT ON COLUMN prefstore.audit_log.position IS
    'global_position of the event: its place in the whole log (insert order).';
COMMENT ON COLUMN prefstore.audit_log.recorded_at IS
    'When the event was appended (database clock).';
COMMENT ON COLUMN prefstore.audit_log.stream_id IS
    'The user whose preferences changed; prefstore''s own streams start with $ ($def:<key> for '
    'a definition''s history, $audit for erasure and retention records).';
COMMENT ON COLUMN prefstore.audit_log.version IS
    'stream_version of the event: 1, 2, 3 ... within its stream.';
COMMENT ON COLUMN prefstore.audit_log.event_type IS
    'PreferenceSet, PreferenceReset, PreferencesRestored, PreferenceDefined, '
    'PreferenceDeprecated, ...';
COMMENT ON COLUMN prefstore.audit_log.key IS
    'The preference key the event is about; for a restore, every key it restored, separated by '
    '", " (prefstore.event_keys()); empty when none.';
COMMENT ON COLUMN prefstore.audit_log.value IS
    'What the event set, as text (prefstore.event_value_text()): the new value of a '
    'PreferenceSet, "key = value" pairs of a restore, NULL for a reset.';
COMMENT ON COLUMN prefstore.audit_log.actor IS
    'Who made the change (metadata actor); NULL when not given.';
COMMENT ON COLUMN prefstore.audit_log.source IS
    'The service or tool that wrote it (metadata source); NULL when not given.';
COMMENT ON COLUMN prefstore.audit_log.reason IS
    'Why (metadata reason); NULL when not given.';
COMMENT ON COLUMN prefstore.audit_log.correlation_id IS
    'Id tying together the events of one request or workflow (metadata correlation_id); NULL '
    'when not given.';
COMMENT ON COLUMN prefstore.audit_log.causation_id IS
    'Id of the event or command that caused this one (metadata causation_id); NULL when not '
    'given.';
COMMENT ON COLUMN prefstore.audit_log.event_id IS
    'The event''s id, chosen by the writer; unique within the stream.';

-------------------------------------------------------------------------------------------------
-- Privileges. Index expressions run with the privileges of whoever inserts, and the view with
-- those of whoever reads, so every prefstore role may execute the functions.
-------------------------------------------------------------------------------------------------

REVOKE ALL ON prefstore.audit_log FROM PUBLIC;
GRANT ALL ON prefstore.audit_log TO prefstore_owner;
GRANT SELECT ON prefstore.audit_log TO prefstore_reader, prefstore_writer;

REVOKE ALL ON FUNCTION prefstore.event_keys(text, jsonb),
                       prefstore.json_value_text(jsonb),
                       prefstore.event_value_text(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION prefstore.event_keys(text, jsonb),
                          prefstore.json_value_text(jsonb),
                          prefstore.event_value_text(text, jsonb)
    TO prefstore_owner, prefstore_writer, prefstore_reader;

SELECT prefstore.assign_owner();
