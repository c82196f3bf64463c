-- Agents: an instance's identity and what its agent reports, and the
-- activations that register instances.
ALTER TABLE instances ADD COLUMN agent_key BLOB NOT NULL DEFAULT x'';
ALTER TABLE instances ADD COLUMN activation_id TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN os TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN host_keys TEXT NOT NULL DEFAULT '[]'; -- JSON array
ALTER TABLE instances ADD COLUMN ssh_port INTEGER NOT NULL DEFAULT 22;
CREATE INDEX instances_by_state ON instances (state, last_seen);

CREATE TABLE activations (
	id                    TEXT PRIMARY KEY,
	code_hash             BLOB NOT NULL,
	description           TEXT NOT NULL,
	default_instance_name TEXT NOT NULL,
	registration_limit    INTEGER NOT NULL,
	registration_count    INTEGER NOT NULL,
	expires_at            INTEGER,
	vpc_id                TEXT NOT NULL,
	tags                  TEXT NOT NULL, -- JSON array of {Key, Value}
	created_at            INTEGER,
	created_by            TEXT NOT NULL
) STRICT;
