-- v5: the bot's Jami contacts

-- A Jami account the bot has as a contact (jami.Contact): one whose trust
-- request the bot accepted, or one the bot invited (confirmed = 0 until it
-- accepts). conversation_id is the 1:1 swarm the contact's Jami made ('' for
-- none); added is in ms since 1970.
CREATE TABLE jami_contact (
    account         TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL DEFAULT '',
    added           INTEGER NOT NULL,
    confirmed       INTEGER NOT NULL DEFAULT 0 CHECK (confirmed IN (0, 1))
);
