-- Console sign-in: passwords (Argon2id PHC strings), virtual MFA devices
-- (sealed seeds) and sessions (SHA-256 of the cookie id only).
CREATE TABLE login_profiles (
	user_name     TEXT PRIMARY KEY REFERENCES users (name),
	password_hash TEXT NOT NULL,
	created_at    INTEGER,
	updated_at    INTEGER
) STRICT;

CREATE TABLE mfa_devices (
	serial_number  TEXT PRIMARY KEY,
	user_name      TEXT REFERENCES users (name), -- NULL while unassigned
	sealed_seed    BLOB NOT NULL,
	created_at     INTEGER,
	enabled_at     INTEGER,
	last_used_step INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE UNIQUE INDEX mfa_devices_by_user ON mfa_devices (user_name) WHERE user_name IS NOT NULL;

CREATE TABLE console_sessions (
	id_hash    BLOB PRIMARY KEY,
	user_name  TEXT NOT NULL REFERENCES users (name),
	mfa        INTEGER NOT NULL,
	created_at INTEGER,
	last_seen  INTEGER,
	expires_at INTEGER,
	source_ip  TEXT NOT NULL,
	user_agent TEXT NOT NULL
) STRICT;
CREATE INDEX console_sessions_by_user ON console_sessions (user_name, expires_at);
