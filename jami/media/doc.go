// Package media is the media transport of one Jami call: the SDP of the
// INVITE and its answer, ICE for each media section, and SRTP keyed by SDES.
//
// It follows what jami-daemon (13.7.0 and later) writes and reads:
//
//   - Session-level a=ice-ufrag and a=ice-pwd, one set for every stream.
//   - Media "RTP/SAVP" with an SDES a=crypto line (AES_CM_128_HMAC_SHA1_80;
//     _32 is understood too), a random key and salt per section and side.
//   - Two ICE components per stream, RTP (1) and RTCP (2), UDP host
//     candidates in the section as a=candidate lines, and a=rtcp naming the
//     RTCP port; no rtcp-mux. jamid numbers components globally by default
//     (1, 2 for the first section, 3, 4 for the second…): both numberings
//     are read, ours is written per section, which jamid reads too.
//   - Sections carry no label: jamid names them audio_0, video_0, video_1…
//     by their order among sections of their kind, and so do we.
//   - The SDP offerer of the INVITE is ICE controlling.
//
// pion/ice runs one component per agent, so each section has two agents
// sharing the session's credentials.
package media
