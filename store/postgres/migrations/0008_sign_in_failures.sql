-- Failed console sign-ins, by user name and by source address, so that
-- the delays and lockouts hold however many replicas serve the console.
CREATE TABLE sign_in_failures (
	key   TEXT COLLATE "C" PRIMARY KEY,
	count BIGINT NOT NULL,
	last  BIGINT NOT NULL
);
CREATE INDEX sign_in_failures_by_last ON sign_in_failures (last);
