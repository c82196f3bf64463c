-- Agents: an instance's identity and what its agent reports, and the
-- activations that register instances.
ALTER TABLE instances ADD COLUMN agent_key BYTEA NOT NULL DEFAULT '\x'::bytea;
ALTER TABLE instances ADD COLUMN activation_id TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN os TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN host_keys TEXT COLLATE "C" NOT NULL DEFAULT '[]'; -- JSON array
ALTER TABLE instances ADD COLUMN ssh_port BIGINT NOT NULL DEFAULT 22;
CREATE INDEX instances_by_state ON instances (state, last_seen);

CREATE TABLE activations (
	id                    TEXT COLLATE "C" PRIMARY KEY,
	code_hash             BYTEA NOT NULL,
	description           TEXT COLLATE "C" NOT NULL,
	default_instance_name TEXT COLLATE "C" NOT NULL,
	registration_limit    BIGINT NOT NULL,
	registration_count    BIGINT NOT NULL,
	expires_at            BIGINT,
	vpc_id                TEXT COLLATE "C" NOT NULL,
	tags                  TEXT COLLATE "C" NOT NULL, -- JSON array of {Key, Value}
	created_at            BIGINT,
	created_by            TEXT COLLATE "C" NOT NULL
);
