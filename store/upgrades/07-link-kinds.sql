-- v7: WHIP and WHEP tokens are links too

-- kind says what a link's token opens: 'call', a guest's call page
-- (/call/<token>); 'whip', media pushed into the room's call (RFC 9725,
-- /whip); 'whep', the room's call pulled out (/whep). A token opens only
-- its own kind.
ALTER TABLE guest_link ADD COLUMN kind TEXT NOT NULL DEFAULT 'call' CHECK (kind IN ('call', 'whip', 'whep'));
