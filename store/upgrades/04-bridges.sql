-- v4: bridges (conversations) and their legs

-- One conversation: the legs it joins and the media forwarded between them.
CREATE TABLE bridge (
    bridge_id    TEXT    PRIMARY KEY,
    -- The room whose call or command started it ('' if none).
    room_id      TEXT    NOT NULL,
    -- Where it rings, as a route target (kind:address), '' for none.
    target       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    end_reason   TEXT    NOT NULL DEFAULT ''
);

-- A leg of a bridge: one party (a Matrix call, the bot's own source, …).
-- kind says which; a Matrix leg's call is the call row of the same call ID.
CREATE TABLE bridge_leg (
    leg_id       TEXT    PRIMARY KEY,
    bridge_id    TEXT    NOT NULL REFERENCES bridge (bridge_id) ON DELETE CASCADE,
    kind         TEXT    NOT NULL,
    direction    TEXT    NOT NULL,
    peer         TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    answered_at  INTEGER,
    ended_at     INTEGER,
    end_reason   TEXT    NOT NULL DEFAULT '',
    ended_by     TEXT    NOT NULL DEFAULT '',
    end_detail   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX bridge_leg_bridge ON bridge_leg (bridge_id);
CREATE INDEX bridge_active ON bridge (bridge_id) WHERE ended_at IS NULL;
