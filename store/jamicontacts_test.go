package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestJamiContacts(t *testing.T) {
	ctx := context.Background()
	st := openTest(t)
	list, err := st.JamiContacts(ctx)
	require.NoError(t, err)
	require.Empty(t, list)
	at := time.UnixMilli(1_700_000_000_123)
	a := JamiContact{Account: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Added: at}
	b := JamiContact{Account: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", ConversationID: "conv", Added: at.Add(time.Second), Confirmed: true}
	require.NoError(t, st.PutJamiContact(ctx, b))
	require.NoError(t, st.PutJamiContact(ctx, a))
	list, err = st.JamiContacts(ctx)
	require.NoError(t, err)
	require.Equal(t, []JamiContact{a, b}, list, "oldest first, times to the millisecond")
	a.Confirmed, a.ConversationID = true, "other"
	require.NoError(t, st.PutJamiContact(ctx, a))
	list, err = st.JamiContacts(ctx)
	require.NoError(t, err)
	require.Equal(t, []JamiContact{a, b}, list, "replaced, not added")
}
