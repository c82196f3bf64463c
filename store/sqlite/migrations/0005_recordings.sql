-- Console session recordings: the index of the asciicast files under the
-- data dir. No foreign key to users: a recording outlives its user.
CREATE TABLE recordings (
	id          TEXT PRIMARY KEY,
	user_name   TEXT NOT NULL,
	user_arn    TEXT NOT NULL,
	instance_id TEXT NOT NULL,
	os_user     TEXT NOT NULL,
	source_ip   TEXT NOT NULL,
	cols        INTEGER NOT NULL,
	rows        INTEGER NOT NULL,
	started_at  INTEGER NOT NULL,
	ended_at    INTEGER, -- NULL while recording
	size        INTEGER NOT NULL DEFAULT 0,
	events      INTEGER NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX recordings_by_start ON recordings (started_at, id);
CREATE INDEX recordings_by_user ON recordings (user_name, started_at, id);
CREATE INDEX recordings_by_instance ON recordings (instance_id, started_at, id);
