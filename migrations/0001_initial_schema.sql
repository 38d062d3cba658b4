-- 0001_initial_schema.sql: prefstore's initial schema (PostgreSQL 15).
--
-- The migration runner applies this file inside one transaction, after it has run
-- CREATE SCHEMA IF NOT EXISTS prefstore and created prefstore.schema_migrations.
-- So: no BEGIN/COMMIT here, and every name is schema-qualified (nothing relies on search_path).
--
-- Never edit this file once released: the runner records its checksum and refuses to run when
-- an applied file's checksum has changed. Later changes go into new numbered files.
-- docs/schema.md describes every object created here.

-------------------------------------------------------------------------------------------------
-- Schema and migration bookkeeping (both created by the runner; only documented here)
-------------------------------------------------------------------------------------------------

COMMENT ON SCHEMA prefstore IS
    'prefstore: event-sourced user preferences. events is the append-only log and the source of '
    'truth; streams serialises writers per user; preferences_current and preference_definitions '
    'are projections of the log; snapshots are a cache; schema_migrations records applied migrations.';

COMMENT ON TABLE prefstore.schema_migrations IS
    'One row per applied migration file, written by the migration runner in the transaction '
    'that applied the file. The runner refuses to run when the checksum of an applied file has '
    'changed, and names the file.';
COMMENT ON COLUMN prefstore.schema_migrations.version IS
    'Migration number: the numeric prefix of the file name (0001_initial_schema.sql is 1).';
COMMENT ON COLUMN prefstore.schema_migrations.name IS
    'File name of the migration, e.g. 0001_initial_schema.sql.';
COMMENT ON COLUMN prefstore.schema_migrations.checksum IS
    'SHA-256 (hex) of the file''s text as applied; the runner compares it with the file on '
    'every run and stops on a difference.';
COMMENT ON COLUMN prefstore.schema_migrations.applied_at IS
    'When the migration was applied.';
COMMENT ON COLUMN prefstore.schema_migrations.duration_ms IS
    'How long applying the migration took, in milliseconds.';

-------------------------------------------------------------------------------------------------
-- streams: one row per user stream; its row lock serialises the writers of that stream
-------------------------------------------------------------------------------------------------

CREATE TABLE prefstore.streams (
    stream_id        text        NOT NULL,
    version          bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_recorded_at timestamptz NULL,
    CONSTRAINT streams_pkey PRIMARY KEY (stream_id),
    CONSTRAINT streams_stream_id_length CHECK (char_length(stream_id) BETWEEN 1 AND 256),
    -- C0 controls U+0001..U+001F, DEL U+007F, C1 controls U+0080..U+009F (U+0000 cannot occur
    -- in text). Written as an E'' literal so it means the same whatever
    -- standard_conforming_strings says.
    CONSTRAINT streams_stream_id_no_control_chars
        CHECK (stream_id !~ E'[\\u0001-\\u001f\\u007f-\\u009f]'),
    CONSTRAINT streams_version_not_negative CHECK (version >= 0),
    CONSTRAINT streams_last_recorded_at_iff_events
        CHECK ((version = 0) = (last_recorded_at IS NULL))
);

COMMENT ON TABLE prefstore.streams IS
    'One row per user stream, holding the stream''s current version. Appends lock this row '
    '(the upsert or SELECT ... FOR UPDATE), which serialises the writers of one stream and is '
    'where the expected version (any, none, exactly N) is checked.';
COMMENT ON COLUMN prefstore.streams.stream_id IS
    'The stream''s id (one stream per user): 1 to 256 characters, no control characters '
    '(U+0001-U+001F, U+007F-U+009F).';
COMMENT ON COLUMN prefstore.streams.version IS
    'stream_version of the stream''s last event; 0 for a stream without events. The next event '
    'gets version + 1.';
COMMENT ON COLUMN prefstore.streams.created_at IS
    'When the row was inserted (transaction start time).';
COMMENT ON COLUMN prefstore.streams.updated_at IS
    'When the row was last changed by an append.';
COMMENT ON COLUMN prefstore.streams.last_recorded_at IS
    'recorded_at of the stream''s last event; NULL exactly when version = 0. An append sets '
    'recorded_at = greatest(database clock, last_recorded_at), so recorded_at never decreases '
    'within a stream.';

-------------------------------------------------------------------------------------------------
-- events: the append-only log
-------------------------------------------------------------------------------------------------

CREATE TABLE prefstore.events (
    global_position bigint      GENERATED ALWAYS AS IDENTITY
                                (SEQUENCE NAME prefstore.events_global_position_seq),
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_pkey PRIMARY KEY (stream_id, stream_version),
    CONSTRAINT events_stream_id_event_id_key UNIQUE (stream_id, event_id),
    CONSTRAINT events_stream_id_fkey FOREIGN KEY (stream_id)
        REFERENCES prefstore.streams (stream_id) ON UPDATE NO ACTION ON DELETE NO ACTION,
    CONSTRAINT events_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT events_event_type_format CHECK (event_type ~ '^[A-Z][A-Za-z0-9]{0,99}$'),
    CONSTRAINT events_schema_version_positive CHECK (schema_version >= 1),
    CONSTRAINT events_payload_is_object CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT events_metadata_is_object CHECK (jsonb_typeof(metadata) = 'object')
);

-- Not unique on purpose: a distributed (Citus) table cannot have a unique index without its
-- distribution column stream_id. The identity column already gives every row its own value.
CREATE INDEX events_global_position_idx
    ON prefstore.events (global_position);

-- Commit-safe catch-up (DESIGN.md pitfall 1).
CREATE INDEX events_transaction_id_global_position_idx
    ON prefstore.events (transaction_id, global_position);

COMMENT ON TABLE prefstore.events IS
    'The event log and the source of truth: every change to a preference or a definition, '
    'kept forever. Append-only: the trigger prefstore.forbid_event_changes() refuses UPDATE, '
    'DELETE and TRUNCATE, and prefstore_writer and prefstore_reader hold none of those '
    'privileges.';
COMMENT ON COLUMN prefstore.events.global_position IS
    'Position in the whole log, from an identity sequence. Unique and increasing in insert '
    'order, but NOT in commit order and with gaps (rolled-back inserts): catch-up readers order '
    'by (transaction_id, global_position), see transaction_id.';
COMMENT ON COLUMN prefstore.events.stream_id IS
    'The stream (user) the event belongs to; references prefstore.streams.';
COMMENT ON COLUMN prefstore.events.stream_version IS
    'Position within the stream: 1, 2, 3 ... without gaps. Primary key with stream_id, so two '
    'appends can never store the same version of one stream.';
COMMENT ON COLUMN prefstore.events.event_id IS
    'Id chosen by the writer, unique within the stream; lets an append recognise a retry of '
    'events already stored (and return the original result instead of storing them again).';
COMMENT ON COLUMN prefstore.events.event_type IS
    'Event type name, e.g. PreferenceSet, PreferenceReset, PreferencesRestored: an upper-case '
    'letter then up to 99 letters or digits. Persisted: a type name never changes meaning.';
COMMENT ON COLUMN prefstore.events.schema_version IS
    'Version (>= 1) of the payload layout of event_type; older versions are upcast on read.';
COMMENT ON COLUMN prefstore.events.payload IS
    'The event''s data, a JSON object written by cereal''s JSON archive with named fields.';
COMMENT ON COLUMN prefstore.events.metadata IS
    'A JSON object: actor, source service, correlation and causation ids, reason. {} when none.';
COMMENT ON COLUMN prefstore.events.recorded_at IS
    'When the event was appended, set by the append from the database clock and never earlier '
    'than the previous event of the stream (see streams.last_recorded_at). "As of T" means '
    'recorded_at <= T.';
COMMENT ON COLUMN prefstore.events.transaction_id IS
    'Id of the inserting transaction (pg_current_xact_id()). A catch-up reader reads only rows '
    'with transaction_id < pg_snapshot_xmin(pg_current_snapshot()), i.e. from transactions that '
    'are all finished, ordered by (transaction_id, global_position), and checkpoints that pair.';

COMMENT ON SEQUENCE prefstore.events_global_position_seq IS
    'Identity sequence of prefstore.events.global_position.';

COMMENT ON INDEX prefstore.events_pkey IS
    'PRIMARY KEY (stream_id, stream_version). Serves reading a stream in order '
    '(WHERE stream_id = $1 AND stream_version > $2 ORDER BY stream_version), as-of reads of a '
    'stream, and is the backstop of optimistic concurrency: a second event with the same '
    'version fails with unique_violation.';
COMMENT ON INDEX prefstore.events_stream_id_event_id_key IS
    'UNIQUE (stream_id, event_id). Serves the idempotency check of a retried append '
    '(WHERE stream_id = $1 AND event_id = ANY($2)) and stops a stored event id from being '
    'stored twice in a stream.';
COMMENT ON INDEX prefstore.events_global_position_idx IS
    '(global_position), not unique (Citus cannot have a unique key without stream_id; the '
    'identity gives unique values). Serves reading the log in position order (backup, verify, '
    'restore: WHERE global_position > $1 ORDER BY global_position) and fetching an event by '
    'position (WHERE global_position = $1).';
COMMENT ON INDEX prefstore.events_transaction_id_global_position_idx IS
    '(transaction_id, global_position). Serves commit-safe catch-up of projectors: '
    'WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) AND '
    '(transaction_id, global_position) > ($1, $2) ORDER BY transaction_id, global_position '
    'LIMIT $3.';

COMMENT ON CONSTRAINT events_stream_id_fkey ON prefstore.events IS
    'Every event belongs to a stream that has a row in prefstore.streams.';

-------------------------------------------------------------------------------------------------
-- The log is append-only
-------------------------------------------------------------------------------------------------

CREATE FUNCTION prefstore.forbid_event_changes()
    RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        RAISE EXCEPTION 'prefstore.events is append-only: % is not allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('%s of the event at global_position %s (stream_id %L, '
                                  'stream_version %s).',
                                  TG_OP, OLD.global_position, OLD.stream_id, OLD.stream_version),
                  HINT = 'Events are never changed or removed. Erasure and retention go only '
                         'through the audited erasure path (run as prefstore_owner; not part '
                         'of this migration).';
    END IF;
    RAISE EXCEPTION 'prefstore.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              DETAIL = format('%s would remove every event of the log.', TG_OP),
              HINT = 'Events are never changed or removed. Erasure and retention go only '
                     'through the audited erasure path (run as prefstore_owner; not part '
                     'of this migration).';
END
$function$;

COMMENT ON FUNCTION prefstore.forbid_event_changes() IS
    'Trigger function of prefstore.events: raises insufficient_privilege (SQLSTATE 42501) '
    '"prefstore.events is append-only: <operation> is not allowed" for every UPDATE, DELETE '
    'and TRUNCATE while its triggers are enabled, whoever runs the statement. Erasure and '
    'retention are left to an audited erasure path that is not part of this migration.';

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON prefstore.events
    FOR EACH ROW EXECUTE FUNCTION prefstore.forbid_event_changes();

CREATE TRIGGER events_append_only_truncate
    BEFORE TRUNCATE ON prefstore.events
    FOR EACH STATEMENT EXECUTE FUNCTION prefstore.forbid_event_changes();

COMMENT ON TRIGGER events_append_only ON prefstore.events IS
    'Refuses every UPDATE and DELETE of an event row (prefstore.forbid_event_changes()).';
COMMENT ON TRIGGER events_append_only_truncate ON prefstore.events IS
    'Refuses TRUNCATE of the log (prefstore.forbid_event_changes()).';

-------------------------------------------------------------------------------------------------
-- preference_definitions: projection of the definition events
-------------------------------------------------------------------------------------------------

CREATE TABLE prefstore.preference_definitions (
    key              text             NOT NULL,
    value_type       text             NOT NULL,
    default_value    jsonb            NULL,
    min_value        double precision NULL,
    max_value        double precision NULL,
    max_length       integer          NULL,
    pattern          text             NULL,
    allowed_values   jsonb            NULL,
    max_items        integer          NULL,
    description      text             NOT NULL DEFAULT '',
    deprecated       boolean          NOT NULL DEFAULT false,
    deprecation_note text             NULL,
    version          bigint           NOT NULL,
    defined_at       timestamptz      NOT NULL,
    updated_at       timestamptz      NOT NULL,
    updated_by       text             NULL,
    last_position    bigint           NOT NULL,
    CONSTRAINT preference_definitions_pkey PRIMARY KEY (key),
    CONSTRAINT preference_definitions_key_format
        CHECK (key ~ '^[a-z][a-z0-9_]*([.][a-z][a-z0-9_]*)*$' AND char_length(key) <= 128),
    CONSTRAINT preference_definitions_value_type_known
        CHECK (value_type IN ('bool', 'int', 'double', 'string', 'string_list')),
    CONSTRAINT preference_definitions_bounds_not_nan
        CHECK (min_value <> 'NaN'::double precision AND max_value <> 'NaN'::double precision),
    CONSTRAINT preference_definitions_min_not_above_max
        CHECK (min_value IS NULL OR max_value IS NULL OR min_value <= max_value),
    CONSTRAINT preference_definitions_max_length_not_negative
        CHECK (max_length IS NULL OR max_length >= 0),
    CONSTRAINT preference_definitions_allowed_values_is_array
        CHECK (allowed_values IS NULL OR jsonb_typeof(allowed_values) = 'array'),
    CONSTRAINT preference_definitions_max_items_not_negative
        CHECK (max_items IS NULL OR max_items >= 0),
    CONSTRAINT preference_definitions_version_positive CHECK (version >= 1),
    CONSTRAINT preference_definitions_last_position_positive CHECK (last_position >= 1)
);

COMMENT ON TABLE prefstore.preference_definitions IS
    'Projection of the definition events: one row per defined preference key with its type, '
    'default and constraints, as of the last definition event applied. Rebuildable from the log.';
COMMENT ON COLUMN prefstore.preference_definitions.key IS
    'Preference key: dot-separated segments, each a lower-case letter then lower-case letters, '
    'digits or underscores (e.g. ui.theme, calendar.default_view); at most 128 characters.';
COMMENT ON COLUMN prefstore.preference_definitions.value_type IS
    'Type of the values: bool, int, double, string or string_list. Persisted: names never change.';
COMMENT ON COLUMN prefstore.preference_definitions.default_value IS
    'Value a read returns when the user has none (never set, or reset); NULL when the '
    'definition has no default. Same encoding as preferences_current.value.';
COMMENT ON COLUMN prefstore.preference_definitions.min_value IS
    'Smallest allowed value for int and double keys; NULL for no lower bound; never NaN. Stored '
    'as double precision, so int bounds beyond +/-2^53 are not exact.';
COMMENT ON COLUMN prefstore.preference_definitions.max_value IS
    'Largest allowed value for int and double keys; NULL for no upper bound; never NaN; not '
    'below min_value.';
COMMENT ON COLUMN prefstore.preference_definitions.max_length IS
    'Longest allowed string (for string_list: each item); NULL for no limit; >= 0.';
COMMENT ON COLUMN prefstore.preference_definitions.pattern IS
    'Regular expression a string value (for string_list: each item) must match; NULL for none.';
COMMENT ON COLUMN prefstore.preference_definitions.allowed_values IS
    'JSON array of the only values allowed (for string_list: allowed items); NULL for no list.';
COMMENT ON COLUMN prefstore.preference_definitions.max_items IS
    'Most items a string_list value may have; NULL for no limit; >= 0.';
COMMENT ON COLUMN prefstore.preference_definitions.description IS
    'What the preference means, for people; empty when not given.';
COMMENT ON COLUMN prefstore.preference_definitions.deprecated IS
    'True when the key should no longer be used.';
COMMENT ON COLUMN prefstore.preference_definitions.deprecation_note IS
    'Why the key is deprecated and what to use instead; NULL when none.';
COMMENT ON COLUMN prefstore.preference_definitions.version IS
    'stream_version of the definition event that produced this row.';
COMMENT ON COLUMN prefstore.preference_definitions.defined_at IS
    'recorded_at of the event that first defined the key.';
COMMENT ON COLUMN prefstore.preference_definitions.updated_at IS
    'recorded_at of the definition event that produced this row.';
COMMENT ON COLUMN prefstore.preference_definitions.updated_by IS
    'Actor (from the event''s metadata) of the definition event that produced this row; NULL '
    'when the event named none.';
COMMENT ON COLUMN prefstore.preference_definitions.last_position IS
    'global_position of the definition event that produced this row.';

-------------------------------------------------------------------------------------------------
-- preferences_current: projection of the current value of each set preference
-------------------------------------------------------------------------------------------------

-- No foreign key to preference_definitions: in open mode a key needs no definition.
CREATE TABLE prefstore.preferences_current (
    stream_id     text        NOT NULL,
    key           text        NOT NULL,
    value_type    text        NOT NULL,
    value         jsonb       NOT NULL,
    version       bigint      NOT NULL,
    updated_at    timestamptz NOT NULL,
    updated_by    text        NULL,
    last_position bigint      NOT NULL,
    CONSTRAINT preferences_current_pkey PRIMARY KEY (stream_id, key),
    CONSTRAINT preferences_current_stream_id_fkey FOREIGN KEY (stream_id)
        REFERENCES prefstore.streams (stream_id) ON UPDATE NO ACTION ON DELETE CASCADE,
    CONSTRAINT preferences_current_key_format
        CHECK (key ~ '^[a-z][a-z0-9_]*([.][a-z][a-z0-9_]*)*$' AND char_length(key) <= 128),
    CONSTRAINT preferences_current_value_type_known
        CHECK (value_type IN ('bool', 'int', 'double', 'string', 'string_list')),
    CONSTRAINT preferences_current_version_positive CHECK (version >= 1),
    CONSTRAINT preferences_current_last_position_positive CHECK (last_position >= 1)
);

COMMENT ON TABLE prefstore.preferences_current IS
    'Projection of the log: the current value of every preference a user has set. A reset '
    'deletes the row, and reads then return the definition''s default. Written in the append''s '
    'transaction (inline) or by a projector with its checkpoint; rebuildable from the log.';
COMMENT ON COLUMN prefstore.preferences_current.stream_id IS
    'The user''s stream; references prefstore.streams (rows go when the stream row goes).';
COMMENT ON COLUMN prefstore.preferences_current.key IS
    'Preference key, same grammar as preference_definitions.key. Not required to have a '
    'definition (open mode).';
COMMENT ON COLUMN prefstore.preferences_current.value_type IS
    'Type of the value: bool, int, double, string or string_list (the set event''s "type"). '
    'Kept beside the value because JSON numbers alone do not tell an int from a double.';
COMMENT ON COLUMN prefstore.preferences_current.value IS
    'The current value as a plain JSON value (true, 30, 2.5, "Europe/Berlin", ["email"]), as '
    'the core library writes it; value_type says how to read it.';
COMMENT ON COLUMN prefstore.preferences_current.version IS
    'stream_version of the event that set this value.';
COMMENT ON COLUMN prefstore.preferences_current.updated_at IS
    'recorded_at of the event that set this value.';
COMMENT ON COLUMN prefstore.preferences_current.updated_by IS
    'Actor (from the event''s metadata) of the event that set this value; NULL when the event '
    'named none.';
COMMENT ON COLUMN prefstore.preferences_current.last_position IS
    'global_position of the event that set this value.';

COMMENT ON INDEX prefstore.preferences_current_pkey IS
    'PRIMARY KEY (stream_id, key). Serves reading all preferences of a user '
    '(WHERE stream_id = $1), reading one (WHERE stream_id = $1 AND key = $2), and the upsert or '
    'delete of the projection.';

-------------------------------------------------------------------------------------------------
-- projection_checkpoints: how far each projection has read the log
-------------------------------------------------------------------------------------------------

CREATE TABLE prefstore.projection_checkpoints (
    projection_name     text        NOT NULL,
    last_transaction_id xid8        NOT NULL DEFAULT '0'::xid8,
    last_position       bigint      NOT NULL DEFAULT 0,
    state               text        NOT NULL DEFAULT 'idle',
    last_error          text        NULL,
    error_position      bigint      NULL,
    events_processed    bigint      NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projection_checkpoints_pkey PRIMARY KEY (projection_name),
    CONSTRAINT projection_checkpoints_name_format
        CHECK (projection_name ~ '^[a-z][a-z0-9_]{0,62}$'),
    CONSTRAINT projection_checkpoints_last_position_not_negative CHECK (last_position >= 0),
    CONSTRAINT projection_checkpoints_start_is_both_zero
        CHECK ((last_position = 0) = (last_transaction_id = '0'::xid8)),
    CONSTRAINT projection_checkpoints_state_known
        CHECK (state IN ('idle', 'running', 'stopped', 'failed', 'rebuilding')),
    CONSTRAINT projection_checkpoints_failed_has_error
        CHECK (state <> 'failed' OR last_error IS NOT NULL),
    CONSTRAINT projection_checkpoints_error_position_positive
        CHECK (error_position IS NULL OR error_position >= 1),
    CONSTRAINT projection_checkpoints_events_processed_not_negative
        CHECK (events_processed >= 0)
);

COMMENT ON TABLE prefstore.projection_checkpoints IS
    'One row per asynchronous projection: the (transaction_id, global_position) of the last '
    'event it applied, written in the same transaction as its read model, plus its run state. '
    'After a restore every checkpoint is reset or re-derived together with its tables.';
COMMENT ON COLUMN prefstore.projection_checkpoints.projection_name IS
    'Name of the projection: a lower-case letter then up to 62 lower-case letters, digits or '
    'underscores.';
COMMENT ON COLUMN prefstore.projection_checkpoints.last_transaction_id IS
    'transaction_id of the last event applied; 0 before the first. With last_position it is '
    'the catch-up cursor: the next read asks for (transaction_id, global_position) > this pair.';
COMMENT ON COLUMN prefstore.projection_checkpoints.last_position IS
    'global_position of the last event applied; 0 before the first (then last_transaction_id '
    'is 0 too).';
COMMENT ON COLUMN prefstore.projection_checkpoints.state IS
    'idle (never run or nothing to do), running, stopped (by an operator), failed (see '
    'last_error), rebuilding (being rebuilt into shadow tables).';
COMMENT ON COLUMN prefstore.projection_checkpoints.last_error IS
    'Message of the last failure; required when state is failed, otherwise NULL or kept for '
    'reference.';
COMMENT ON COLUMN prefstore.projection_checkpoints.error_position IS
    'global_position of the event whose projection failed; NULL when no event is to blame.';
COMMENT ON COLUMN prefstore.projection_checkpoints.events_processed IS
    'Number of events applied since the projection was created or last rebuilt.';
COMMENT ON COLUMN prefstore.projection_checkpoints.updated_at IS
    'When the row was last written.';

-------------------------------------------------------------------------------------------------
-- snapshots: cache of folded stream state
-------------------------------------------------------------------------------------------------

CREATE TABLE prefstore.snapshots (
    stream_id      text        NOT NULL,
    stream_version bigint      NOT NULL,
    format_version integer     NOT NULL,
    state          bytea       NOT NULL,
    checksum       bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id, stream_version),
    CONSTRAINT snapshots_stream_id_fkey FOREIGN KEY (stream_id)
        REFERENCES prefstore.streams (stream_id) ON UPDATE NO ACTION ON DELETE CASCADE,
    CONSTRAINT snapshots_stream_version_positive CHECK (stream_version >= 1),
    CONSTRAINT snapshots_format_version_positive CHECK (format_version >= 1),
    CONSTRAINT snapshots_checksum_is_sha256 CHECK (octet_length(checksum) = 32)
);

COMMENT ON TABLE prefstore.snapshots IS
    'Cache of a stream''s folded state after a given event, so a read need not replay the whole '
    'stream. Dropping rows loses nothing: state is rebuilt from events. A row whose checksum '
    'does not match is ignored and rebuilt.';
COMMENT ON COLUMN prefstore.snapshots.stream_id IS
    'The user''s stream; references prefstore.streams (rows go when the stream row goes).';
COMMENT ON COLUMN prefstore.snapshots.stream_version IS
    'stream_version of the last event folded into state.';
COMMENT ON COLUMN prefstore.snapshots.format_version IS
    'Version (>= 1) of the layout of state; a reader that does not know it ignores the row.';
COMMENT ON COLUMN prefstore.snapshots.state IS
    'The folded state, cereal portable binary archive.';
COMMENT ON COLUMN prefstore.snapshots.checksum IS
    'SHA-256 (32 bytes) over state, checked before the state is used.';
COMMENT ON COLUMN prefstore.snapshots.created_at IS
    'When the snapshot was written.';

COMMENT ON INDEX prefstore.snapshots_pkey IS
    'PRIMARY KEY (stream_id, stream_version). Serves finding the newest snapshot at or before a '
    'version (WHERE stream_id = $1 AND stream_version <= $2 ORDER BY stream_version DESC '
    'LIMIT 1) and pruning old snapshots of a stream.';

COMMENT ON INDEX prefstore.streams_pkey IS
    'PRIMARY KEY (stream_id). Serves locking and reading one stream row (the append''s upsert or '
    'SELECT ... FOR UPDATE) and the foreign-key checks of the stream-scoped tables.';
COMMENT ON INDEX prefstore.preference_definitions_pkey IS
    'PRIMARY KEY (key). Serves looking up one definition and the projection''s upsert.';
COMMENT ON INDEX prefstore.projection_checkpoints_pkey IS
    'PRIMARY KEY (projection_name). Serves reading and locking one projection''s checkpoint.';

-------------------------------------------------------------------------------------------------
-- Roles. Roles are cluster-wide: another database of the same cluster may have created them
-- already, or be creating them right now in its own open migration transaction. So each is
-- created only when missing, and losing the race (duplicate_object when the role is visible,
-- unique_violation on pg_authid when the other transaction commits first) is ignored.
-- Role comments live in a shared catalog too: a comment is written only when the role has
-- none, and losing that race (unique_violation on pg_shdescription) is ignored.
-------------------------------------------------------------------------------------------------

DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'prefstore_owner') THEN
        CREATE ROLE prefstore_owner NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$do$;

DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'prefstore_writer') THEN
        CREATE ROLE prefstore_writer NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$do$;

DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'prefstore_reader') THEN
        CREATE ROLE prefstore_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$do$;

DO $do$
BEGIN
    IF pg_catalog.shobj_description(
           (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'prefstore_owner'),
           'pg_authid') IS NULL THEN
        COMMENT ON ROLE prefstore_owner IS
            'prefstore owner (NOLOGIN): all privileges on schema prefstore, its tables and '
            'sequences; runs DDL and the audited erasure path. Grant it to a login role.';
    END IF;
EXCEPTION WHEN unique_violation THEN
    NULL;
END
$do$;

DO $do$
BEGIN
    IF pg_catalog.shobj_description(
           (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'prefstore_writer'),
           'pg_authid') IS NULL THEN
        COMMENT ON ROLE prefstore_writer IS
            'prefstore writer (NOLOGIN): appends events and writes streams, projections, '
            'checkpoints and snapshots; can never UPDATE, DELETE or TRUNCATE events. Grant it to '
            'the services'' login role.';
    END IF;
EXCEPTION WHEN unique_violation THEN
    NULL;
END
$do$;

DO $do$
BEGIN
    IF pg_catalog.shobj_description(
           (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'prefstore_reader'),
           'pg_authid') IS NULL THEN
        COMMENT ON ROLE prefstore_reader IS
            'prefstore reader (NOLOGIN): SELECT on the tables of schema prefstore, nothing else.';
    END IF;
EXCEPTION WHEN unique_violation THEN
    NULL;
END
$do$;

-------------------------------------------------------------------------------------------------
-- Privileges
-------------------------------------------------------------------------------------------------

REVOKE ALL ON SCHEMA prefstore FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA prefstore FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA prefstore FROM PUBLIC;
REVOKE ALL ON FUNCTION prefstore.forbid_event_changes() FROM PUBLIC;

-- owner
GRANT ALL ON SCHEMA prefstore TO prefstore_owner;
GRANT ALL ON ALL TABLES IN SCHEMA prefstore TO prefstore_owner;
GRANT ALL ON ALL SEQUENCES IN SCHEMA prefstore TO prefstore_owner;
GRANT EXECUTE ON FUNCTION prefstore.forbid_event_changes() TO prefstore_owner;

-- writer
GRANT USAGE ON SCHEMA prefstore TO prefstore_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA prefstore TO prefstore_writer;
GRANT INSERT ON prefstore.events TO prefstore_writer;
GRANT INSERT, UPDATE ON prefstore.streams TO prefstore_writer;
GRANT INSERT, UPDATE, DELETE ON
    prefstore.preferences_current,
    prefstore.preference_definitions,
    prefstore.projection_checkpoints,
    prefstore.snapshots
    TO prefstore_writer;
GRANT USAGE ON SEQUENCE prefstore.events_global_position_seq TO prefstore_writer;

-- reader
GRANT USAGE ON SCHEMA prefstore TO prefstore_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA prefstore TO prefstore_reader;
