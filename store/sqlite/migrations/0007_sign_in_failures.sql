-- Failed console sign-ins, by user name and by source address, so that
-- the delays and lockouts hold however many replicas serve the console.
CREATE TABLE sign_in_failures (
	key   TEXT PRIMARY KEY,
	count INTEGER NOT NULL,
	last  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX sign_in_failures_by_last ON sign_in_failures (last);
