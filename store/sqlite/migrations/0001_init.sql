-- Postern's initial schema. Times are INTEGER nanoseconds since the Unix
-- epoch, UTC; NULL stands for the zero time.

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE users (
	name       TEXT PRIMARY KEY,
	id         TEXT NOT NULL UNIQUE,
	created_at INTEGER
) STRICT;

CREATE TABLE access_keys (
	id            TEXT PRIMARY KEY,
	user_name     TEXT NOT NULL REFERENCES users (name),
	sealed_secret BLOB NOT NULL,
	status        TEXT NOT NULL,
	created_at    INTEGER
) STRICT;
CREATE INDEX access_keys_by_user ON access_keys (user_name);

CREATE TABLE iam_groups (
	name       TEXT PRIMARY KEY,
	id         TEXT NOT NULL UNIQUE,
	created_at INTEGER
) STRICT;

CREATE TABLE group_members (
	group_name TEXT NOT NULL REFERENCES iam_groups (name),
	user_name  TEXT NOT NULL REFERENCES users (name),
	PRIMARY KEY (group_name, user_name)
) STRICT, WITHOUT ROWID;
CREATE INDEX group_members_by_user ON group_members (user_name, group_name);

-- Inline policies, one table per owner kind so that each has a foreign key.
CREATE TABLE user_policies (
	user_name TEXT NOT NULL REFERENCES users (name),
	name      TEXT NOT NULL,
	document  TEXT NOT NULL,
	PRIMARY KEY (user_name, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE group_policies (
	group_name TEXT NOT NULL REFERENCES iam_groups (name),
	name       TEXT NOT NULL,
	document   TEXT NOT NULL,
	PRIMARY KEY (group_name, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE vpcs (
	id         TEXT PRIMARY KEY,
	cidr       TEXT NOT NULL,
	state      TEXT NOT NULL,
	created_at INTEGER
) STRICT;

CREATE TABLE subnets (
	id                TEXT PRIMARY KEY,
	vpc_id            TEXT NOT NULL REFERENCES vpcs (id),
	cidr              TEXT NOT NULL,
	availability_zone TEXT NOT NULL,
	state             TEXT NOT NULL,
	created_at        INTEGER
) STRICT;
CREATE INDEX subnets_by_vpc ON subnets (vpc_id);

-- An instance keeps its subnet id after the subnet is gone (terminated
-- instances may outlive it), so there is no foreign key.
CREATE TABLE instances (
	id          TEXT PRIMARY KEY,
	state       TEXT NOT NULL,
	hostname    TEXT NOT NULL,
	platform    TEXT NOT NULL,
	private_ip  TEXT NOT NULL,
	public_ip   TEXT NOT NULL,
	vpc_id      TEXT NOT NULL,
	subnet_id   TEXT NOT NULL,
	launch_time INTEGER,
	last_seen   INTEGER
) STRICT;
CREATE INDEX instances_by_subnet ON instances (subnet_id, state);

-- Tags of every taggable resource; the id's prefix (vpc-, subnet-, i-)
-- says which table owns it.
CREATE TABLE tags (
	resource_id TEXT NOT NULL,
	key         TEXT NOT NULL,
	value       TEXT NOT NULL,
	PRIMARY KEY (resource_id, key)
) STRICT, WITHOUT ROWID;

-- The audit chain. seq is the rowid: appends go to the end of the b-tree.
-- resources is a JSON array kept for reading records back; lookups by
-- resource use audit_resources.
CREATE TABLE audit_records (
	seq           INTEGER PRIMARY KEY,
	event_id      TEXT NOT NULL,
	event_time    INTEGER,
	event_name    TEXT NOT NULL,
	event_source  TEXT NOT NULL,
	user_name     TEXT NOT NULL,
	access_key_id TEXT NOT NULL,
	error_code    TEXT NOT NULL,
	resources     TEXT NOT NULL,
	body          BLOB NOT NULL,
	prev_hash     BLOB NOT NULL,
	hash          BLOB NOT NULL
) STRICT;
CREATE INDEX audit_by_event_name ON audit_records (event_name, seq);
CREATE INDEX audit_by_user ON audit_records (user_name, seq);
CREATE INDEX audit_by_time ON audit_records (event_time);
CREATE INDEX audit_errors ON audit_records (seq) WHERE error_code <> '';

CREATE TABLE audit_resources (
	resource TEXT NOT NULL,
	seq      INTEGER NOT NULL,
	PRIMARY KEY (resource, seq)
) STRICT, WITHOUT ROWID;

-- Several digests may cover the same seq (one per interval, even when no
-- record was appended in between).
CREATE TABLE audit_digests (
	id        INTEGER PRIMARY KEY,
	seq       INTEGER NOT NULL,
	hash      BLOB NOT NULL,
	time      INTEGER,
	key_id    TEXT NOT NULL,
	signature BLOB NOT NULL
) STRICT;
CREATE INDEX audit_digests_by_seq ON audit_digests (seq, id);
