-- 0003: time travel and recovery. Snapshots say which event they end at (position and time), so
-- an as-of read finds the newest snapshot at or before a moment by index; a history of the
-- logical backups taken and restored.

-- Snapshots are a cache (dropping rows loses nothing) and nothing wrote them before this
-- migration; clearing them lets the new columns be NOT NULL without an invented default.
DELETE FROM prefstore.snapshots;

ALTER TABLE prefstore.snapshots
    ADD COLUMN last_position bigint NOT NULL,
    ADD COLUMN last_recorded_at timestamptz NOT NULL,
    ADD CONSTRAINT snapshots_last_position_positive CHECK (last_position >= 1);

COMMENT ON COLUMN prefstore.snapshots.last_position IS
    'global_position of the event at stream_version (the last event folded into state).';
COMMENT ON COLUMN prefstore.snapshots.last_recorded_at IS
    'recorded_at of the event at stream_version (the last event folded into state).';
COMMENT ON COLUMN prefstore.snapshots.checksum IS
    'SHA-256 (32 bytes) of the text "stream_id, stream_version, format_version, last_position, '
    'last_recorded_at in unix microseconds", each followed by a newline, then the state bytes: '
    'a row whose state or whose place in the stream was changed fails it. Checked before use.';

CREATE INDEX snapshots_stream_id_last_position_idx
    ON prefstore.snapshots (stream_id, last_position);
CREATE INDEX snapshots_stream_id_last_recorded_at_idx
    ON prefstore.snapshots (stream_id, last_recorded_at, stream_version);

COMMENT ON INDEX prefstore.snapshots_stream_id_last_position_idx IS
    '(stream_id, last_position). Serves finding the newest snapshot of a stream at or before a '
    'global position (WHERE stream_id = $1 AND last_position <= $2 ORDER BY last_position DESC '
    'LIMIT 1).';
COMMENT ON INDEX prefstore.snapshots_stream_id_last_recorded_at_idx IS
    '(stream_id, last_recorded_at, stream_version). Serves finding the newest snapshot of a '
    'stream at or before a moment (WHERE stream_id = $1 AND last_recorded_at <= $2 ORDER BY '
    'last_recorded_at DESC, stream_version DESC LIMIT 1); several snapshots may share a time.';

CREATE TABLE prefstore.backup_history (
    backup_id      uuid        NOT NULL,
    operation      text        NOT NULL,
    file           text        NOT NULL,
    since_position bigint      NOT NULL,
    until_position bigint      NOT NULL,
    events         bigint      NOT NULL,
    snapshots      bigint      NOT NULL,
    source         text        NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT backup_history_pkey PRIMARY KEY (backup_id, operation, recorded_at),
    CONSTRAINT backup_history_operation_known CHECK (operation IN ('created', 'restored')),
    CONSTRAINT backup_history_positions CHECK (0 <= since_position AND since_position <= until_position),
    CONSTRAINT backup_history_counts CHECK (events >= 0 AND snapshots >= 0)
);

COMMENT ON TABLE prefstore.backup_history IS
    'One row per logical backup written from this database (operation created) and per backup '
    'file restored into it (operation restored). Incremental restores check it: a backup '
    'starting after position P goes only on top of a restored chain that ends at P.';
COMMENT ON COLUMN prefstore.backup_history.backup_id IS 'Id of the backup (from its header).';
COMMENT ON COLUMN prefstore.backup_history.operation IS
    'created: the backup was written from this database; restored: it was restored into it.';
COMMENT ON COLUMN prefstore.backup_history.file IS 'The file name given, as given.';
COMMENT ON COLUMN prefstore.backup_history.since_position IS
    'The backup holds events with global_position > since_position; 0 for a full backup.';
COMMENT ON COLUMN prefstore.backup_history.until_position IS
    'Every event with global_position in (since_position, until_position] is in the backup. '
    'For a restore cut short (--until, --position): every event of the file up to this '
    'position was restored (events of later positions may have been restored too).';
COMMENT ON COLUMN prefstore.backup_history.events IS 'Events written or restored.';
COMMENT ON COLUMN prefstore.backup_history.snapshots IS 'Snapshots written or restored.';
COMMENT ON COLUMN prefstore.backup_history.source IS
    'Where the backup was taken (connection string without password).';
COMMENT ON COLUMN prefstore.backup_history.recorded_at IS 'When the row was written.';
COMMENT ON INDEX prefstore.backup_history_pkey IS
    'PRIMARY KEY (backup_id, operation, recorded_at).';

REVOKE ALL ON prefstore.backup_history FROM PUBLIC;
GRANT ALL ON prefstore.backup_history TO prefstore_owner;
GRANT SELECT, INSERT ON prefstore.backup_history TO prefstore_writer;
GRANT SELECT ON prefstore.backup_history TO prefstore_reader;
