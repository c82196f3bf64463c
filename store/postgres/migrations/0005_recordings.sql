-- Console session recordings: the index of the asciicast files under the
-- data dir. No foreign key to users: a recording outlives its user.
CREATE TABLE recordings (
	id          TEXT COLLATE "C" PRIMARY KEY,
	user_name   TEXT COLLATE "C" NOT NULL,
	user_arn    TEXT COLLATE "C" NOT NULL,
	instance_id TEXT COLLATE "C" NOT NULL,
	os_user     TEXT COLLATE "C" NOT NULL,
	source_ip   TEXT COLLATE "C" NOT NULL,
	cols        BIGINT NOT NULL,
	rows        BIGINT NOT NULL,
	started_at  BIGINT NOT NULL,
	ended_at    BIGINT, -- NULL while recording
	size        BIGINT NOT NULL DEFAULT 0,
	events      BIGINT NOT NULL DEFAULT 0,
	error       TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX recordings_by_start ON recordings (started_at, id);
CREATE INDEX recordings_by_user ON recordings (user_name, started_at, id);
CREATE INDEX recordings_by_instance ON recordings (instance_id, started_at, id);
