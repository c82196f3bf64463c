-- Replicas: which replica holds each agent's live session, so that a key
-- push that arrives at another replica is routed to it (over NOTIFY on
-- the holder's channel). A replica that dies leaves its rows; the agent's
-- next session, on a live replica, takes them over.
CREATE TABLE agent_sessions (
	instance_id TEXT COLLATE "C" PRIMARY KEY,
	replica_id  TEXT COLLATE "C" NOT NULL,
	since       BIGINT NOT NULL
);
CREATE INDEX agent_sessions_by_replica ON agent_sessions (replica_id);
