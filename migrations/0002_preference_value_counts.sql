-- 0002: the second read model, preference_value_counts: how many users hold each value of each
-- key. Written asynchronously by the projector "preference_value_counts" together with its
-- checkpoint; rebuildable from the log at any time.

CREATE TABLE prefstore.preference_value_holders (
    stream_id  text  NOT NULL,
    key        text  NOT NULL,
    value_type text  NOT NULL,
    value      jsonb NOT NULL,
    CONSTRAINT preference_value_holders_pkey PRIMARY KEY (stream_id, key),
    CONSTRAINT preference_value_holders_value_type_known
        CHECK (value_type IN ('bool', 'int', 'double', 'string', 'string_list'))
);

COMMENT ON TABLE prefstore.preference_value_holders IS
    'State of the projection preference_value_counts: the value each user holds for each key, '
    'as far as the projection has read the log. It lets the projection move a user from one '
    'value''s count to another''s. Derived data: rebuildable from the log.';
COMMENT ON COLUMN prefstore.preference_value_holders.stream_id IS 'The user''s stream.';
COMMENT ON COLUMN prefstore.preference_value_holders.key IS 'Preference key.';
COMMENT ON COLUMN prefstore.preference_value_holders.value_type IS
    'Type of the value: bool, int, double, string or string_list.';
COMMENT ON COLUMN prefstore.preference_value_holders.value IS
    'The value the user holds, as plain JSON.';
COMMENT ON INDEX prefstore.preference_value_holders_pkey IS
    'PRIMARY KEY (stream_id, key). Serves the projection''s look-up of the values a batch of '
    'events replaces.';

CREATE TABLE prefstore.preference_value_counts (
    key        text   NOT NULL,
    value_type text   NOT NULL,
    value      jsonb  NOT NULL,
    users      bigint NOT NULL,
    CONSTRAINT preference_value_counts_pkey PRIMARY KEY (key, value_type, value),
    CONSTRAINT preference_value_counts_users_positive CHECK (users >= 0),
    CONSTRAINT preference_value_counts_value_type_known
        CHECK (value_type IN ('bool', 'int', 'double', 'string', 'string_list'))
);

COMMENT ON TABLE prefstore.preference_value_counts IS
    'Read model: how many users hold each value of each key (for example how many users chose '
    'each time zone). Users at the default are not counted. Written by the asynchronous '
    'projection preference_value_counts with its checkpoint; rebuildable from the log.';
COMMENT ON COLUMN prefstore.preference_value_counts.key IS 'Preference key.';
COMMENT ON COLUMN prefstore.preference_value_counts.value_type IS
    'Type of the value: bool, int, double, string or string_list.';
COMMENT ON COLUMN prefstore.preference_value_counts.value IS 'The value, as plain JSON.';
COMMENT ON COLUMN prefstore.preference_value_counts.users IS
    'Number of users holding this value; rows reaching 0 are deleted.';
COMMENT ON INDEX prefstore.preference_value_counts_pkey IS
    'PRIMARY KEY (key, value_type, value). Serves "how many users hold each value of key K" '
    '(WHERE key = $1) and the projection''s upsert of count changes.';

GRANT SELECT ON prefstore.preference_value_holders, prefstore.preference_value_counts
    TO prefstore_reader, prefstore_writer;
GRANT INSERT, UPDATE, DELETE ON prefstore.preference_value_holders,
    prefstore.preference_value_counts TO prefstore_writer;
GRANT ALL ON prefstore.preference_value_holders, prefstore.preference_value_counts
    TO prefstore_owner;
