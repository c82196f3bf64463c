-- Which replica holds the control connection of each endpoint process, so
-- that a relayed tunnel whose client reached another replica is routed to
-- a relay-mode process through the replica that holds it.
CREATE TABLE endpoint_sessions (
	endpoint_id TEXT COLLATE "C" NOT NULL,
	process_id  TEXT COLLATE "C" NOT NULL,
	replica_id  TEXT COLLATE "C" NOT NULL,
	relay       BOOLEAN NOT NULL,
	PRIMARY KEY (endpoint_id, process_id)
);
