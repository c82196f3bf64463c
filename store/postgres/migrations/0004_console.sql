-- Console sign-in: passwords (Argon2id PHC strings), virtual MFA devices
-- (sealed seeds) and sessions (SHA-256 of the cookie id only).
CREATE TABLE login_profiles (
	user_name     TEXT COLLATE "C" PRIMARY KEY REFERENCES users (name),
	password_hash TEXT COLLATE "C" NOT NULL,
	created_at    BIGINT,
	updated_at    BIGINT
);

CREATE TABLE mfa_devices (
	serial_number  TEXT COLLATE "C" PRIMARY KEY,
	user_name      TEXT COLLATE "C" REFERENCES users (name), -- NULL while unassigned
	sealed_seed    BYTEA NOT NULL,
	created_at     BIGINT,
	enabled_at     BIGINT,
	last_used_step BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX mfa_devices_by_user ON mfa_devices (user_name) WHERE user_name IS NOT NULL;

CREATE TABLE console_sessions (
	id_hash    BYTEA PRIMARY KEY,
	user_name  TEXT COLLATE "C" NOT NULL REFERENCES users (name),
	mfa        BOOLEAN NOT NULL,
	created_at BIGINT,
	last_seen  BIGINT,
	expires_at BIGINT,
	source_ip  TEXT COLLATE "C" NOT NULL,
	user_agent TEXT COLLATE "C" NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_name, expires_at);
