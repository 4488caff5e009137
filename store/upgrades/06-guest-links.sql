-- v6: call links for browser guests

-- A call link (bridge/guestlink): a guest who opens <public base>/call/<token>
-- joins the call of room_id. The token is never kept, only token_hash, the
-- hex SHA-256 of it; id, the link's public id, is the first 10 digits of
-- token_hash. Times are in ms since 1970; revoked_at is NULL until revoked.
CREATE TABLE guest_link (
    id         TEXT    PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    room_id    TEXT    NOT NULL,
    video      INTEGER NOT NULL DEFAULT 0 CHECK (video IN (0, 1)),
    echo       INTEGER NOT NULL DEFAULT 0 CHECK (echo IN (0, 1)),
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    joins      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX guest_link_room_idx ON guest_link (room_id, created_at);
