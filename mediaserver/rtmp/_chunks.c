/* The RTMP chunk layer in C: the reader (PyChunkReader in chunk.py is its reference) with its
 * media lane, and, below, the chunker the relays write with (PyMessageChunker in chunk_out.py).
 *
 * Why the reader exists: ingest's CPU per publisher was about twice nginx-rtmp's (issue 14), and the
 * pure-Python reader was the largest part the server itself adds to the event loop and the
 * kernel: each socket read was appended to a bytearray, scanned with strided slices and cut
 * into new bytes objects, three copies of every byte before a frame reached the live stream.
 * Here a read is parsed where it lies (only an incomplete chunk at its end is kept) and each
 * message's payload is gathered straight into the bytes object handed out: one copy.
 *
 * The Python reader stays the reference. Both must give the same messages and raise the same
 * errors with the same text on the same feed for any input cut any way (tests/unit/
 * test_rtmp_chunk.py runs every case on both; test_rtmp_chunk_differential.py compares them on
 * generated and mutated streams). So this follows chunk.py step by step: a chunk is consumed
 * only when all of it is buffered, checks happen in the same order, and the limits are the
 * same ones (message size, partially received bytes, chunk stream ids, chunk size).
 *
 * Memory a peer can make us hold is bounded as in Python: a message buffer is never larger
 * than the bytes of that message already received or present in the current read, and their
 * total over open messages is checked against the message limit after every feed.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define EXTENDED 0xFFFFFFu
/* Longest chunk header: 3-byte basic header, 11-byte type-0 header, 4-byte extended stamp. */
#define MAX_HEADER 18

typedef struct {
    uint32_t csid;
    int started;
    int ext;                /* the last type 0/1/2 header used an extended timestamp */
    unsigned char ext_bytes[4];
    int64_t timestamp;      /* unwrapped timestamp of the current/last message */
    uint32_t raw;           /* the same, modulo 2**32 */
    uint32_t delta;         /* timestamp field of the last type 0/1/2 header */
    uint32_t length;
    uint32_t type_id;
    uint32_t stream_id;
    uint32_t remaining;     /* bytes of the open message not yet received (0: none open) */
    PyObject *msg;          /* bytes being filled for the open message, or NULL */
    Py_ssize_t have;        /* bytes of the open message written into msg */
} Stream;

typedef struct {
    PyObject_HEAD
    uint32_t chunk_size;
    uint32_t max_chunk_size;
    uint32_t max_message;
    uint32_t max_streams;
    PyObject *max_message_name; /* str */
    Stream *streams;            /* in order of first use */
    Py_ssize_t nstreams;
    Py_ssize_t streams_cap;
    int32_t *index;             /* open addressing: csid -> position in streams, -1 empty */
    Py_ssize_t index_mask;
    unsigned char *buf;         /* unconsumed input: an incomplete chunk */
    Py_ssize_t buf_len;
    Py_ssize_t buf_cap;
    PyObject *error;            /* str: why the stream failed, or NULL */
    PyObject *ProtocolError;    /* the exception class to raise, given by chunk.py */
    /* The media lane (see media_lane): NULL until the connection turns it on. */
    PyObject *publishing;       /* set of message stream ids whose media is wanted */
    PyObject *video_frame;      /* events.VideoFrame */
    PyObject *audio_frame;      /* events.AudioFrame */
    int lane_open;              /* no other message has been handed out in this feed yet */
} Reader;

/* Codec names, interned once: the events carry the same strings media.py would. */
static PyObject *AVC1, *HVC1, *MP4A;

/* ---------------------------------------------------------------------------------------- */
/* Chunk stream table */

static inline Py_ssize_t slot_of(uint32_t csid, Py_ssize_t mask) {
    return (Py_ssize_t)((csid * 2654435761u) & (uint32_t)mask);
}

/* Room for one more item in a growing array of ``count`` (capacity doubling from 8). */
static int room_for_one(void **items, Py_ssize_t count, Py_ssize_t *cap, size_t size) {
    if (count < *cap) return 0;
    Py_ssize_t grown_cap = *cap ? *cap * 2 : 8;
    void *grown = PyMem_Realloc(*items, size * (size_t)grown_cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = grown;
    *cap = grown_cap;
    return 0;
}

static Stream *find_stream(Reader *self, uint32_t csid) {
    if (self->index == NULL) return NULL;
    Py_ssize_t mask = self->index_mask;
    for (Py_ssize_t i = slot_of(csid, mask);; i = (i + 1) & mask) {
        int32_t at = self->index[i];
        if (at < 0) return NULL;
        if (self->streams[at].csid == csid) return &self->streams[at];
    }
}

static int rebuild_index(Reader *self, Py_ssize_t size) {
    int32_t *index = PyMem_Malloc(sizeof(int32_t) * (size_t)size);
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) index[i] = -1;
    Py_ssize_t mask = size - 1;
    for (Py_ssize_t s = 0; s < self->nstreams; s++) {
        Py_ssize_t i = slot_of(self->streams[s].csid, mask);
        while (index[i] >= 0) i = (i + 1) & mask;
        index[i] = (int32_t)s;
    }
    PyMem_Free(self->index);
    self->index = index;
    self->index_mask = mask;
    return 0;
}

static Stream *new_stream(Reader *self, uint32_t csid) {
    if ((uint64_t)self->nstreams >= self->max_streams) {
        PyErr_Format(self->ProtocolError,
                     "peer uses more than max_chunk_streams=%u chunk stream ids",
                     self->max_streams);
        return NULL;
    }
    if (room_for_one((void **)&self->streams, self->nstreams, &self->streams_cap,
                     sizeof(Stream)) < 0)
        return NULL;
    Stream *cs = &self->streams[self->nstreams];
    memset(cs, 0, sizeof(Stream));
    cs->csid = csid;
    self->nstreams++;
    /* Keep the table at most half full. */
    if (self->index == NULL || self->nstreams * 2 > self->index_mask + 1) {
        Py_ssize_t size = self->index ? (self->index_mask + 1) * 2 : 16;
        if (rebuild_index(self, size) < 0) {
            self->nstreams--;
            return NULL;
        }
    } else {
        Py_ssize_t mask = self->index_mask;
        Py_ssize_t i = slot_of(csid, mask);
        while (self->index[i] >= 0) i = (i + 1) & mask;
        self->index[i] = (int32_t)(self->nstreams - 1);
    }
    return cs;
}

static void drop_messages(Reader *self) {
    for (Py_ssize_t s = 0; s < self->nstreams; s++) {
        Py_CLEAR(self->streams[s].msg);
        self->streams[s].have = 0;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Messages */

static inline int64_t signed_delta(uint32_t d) {
    return d < 0x80000000u ? (int64_t)d : (int64_t)d - 0x100000000LL;
}

/* Append a complete message to ``out``; takes the reference to ``payload``. */
static int emit(Stream *cs, PyObject *payload, PyObject *out) {
    PyObject *item = PyTuple_New(4);
    if (item == NULL) {
        Py_DECREF(payload);
        return -1;
    }
    PyTuple_SET_ITEM(item, 3, payload);
    PyObject *v;
    if ((v = PyLong_FromUnsignedLong(cs->type_id)) == NULL) goto fail;
    PyTuple_SET_ITEM(item, 0, v);
    if ((v = PyLong_FromUnsignedLong(cs->stream_id)) == NULL) goto fail;
    PyTuple_SET_ITEM(item, 1, v);
    if ((v = PyLong_FromLongLong(cs->timestamp)) == NULL) goto fail;
    PyTuple_SET_ITEM(item, 2, v);
    int rc = PyList_Append(out, item);
    Py_DECREF(item);
    return rc;
fail:
    Py_DECREF(item);
    return -1;
}

/* Set Chunk Size or Abort (type 0 is handled as Abort, as in Python). */
static int control(Reader *self, uint32_t type_id, const unsigned char *p, Py_ssize_t len) {
    if (len < 4) {
        PyErr_Format(self->ProtocolError, "%s message has %zd bytes, needs 4",
                     type_id == 1 ? "Set Chunk Size" : "Abort", len);
        return -1;
    }
    uint32_t value = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (type_id == 1) {
        if (value & 0x80000000u) {
            PyErr_Format(self->ProtocolError, "Set Chunk Size 0x%08x has bit 31 set", value);
            return -1;
        }
        if (value == 0) {
            PyErr_SetString(self->ProtocolError, "Set Chunk Size of 0");
            return -1;
        }
        if (value > self->max_chunk_size) {
            PyErr_Format(self->ProtocolError, "Set Chunk Size %u exceeds max_chunk_size=%u",
                         value, self->max_chunk_size);
            return -1;
        }
        self->chunk_size = value;
    } else {
        Stream *target = find_stream(self, value);
        if (target != NULL) {
            target->remaining = 0;
            Py_CLEAR(target->msg);
            target->have = 0;
        }
    }
    return 0;
}

/* The media lane: a complete audio or video message of a publishing stream, in the two forms
 * every encoder sends nearly all the time (an H.264/HEVC coded frame in the legacy FLV layout,
 * a raw AAC frame), becomes the event media.py would make of it, here, with no message tuple
 * and no Python step in between. Returns 1 with the event appended, 0 for "not this lane"
 * (the message then goes out as a tuple, for connection.py and media.py), -1 on error.
 *
 * The connection decides which streams are publishing after it has seen the commands before a
 * message, so the lane closes for the rest of a feed once any message other than media has
 * been handed out: a publish that such a command ends or starts is decided in Python first. */
static int media_lane(Reader *self, Stream *cs, PyObject *payload, PyObject *out) {
    if (!self->lane_open || self->publishing == NULL) return 0;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(payload);
    Py_ssize_t len = PyBytes_GET_SIZE(payload);
    int video = cs->type_id == 9;
    PyObject *codec = MP4A;
    if (video) {
        /* parse_video: legacy layout (bit 7 clear), codec id 7 (avc1) or 12 (hvc1), not a
         * command frame (type 5), AVC packet type 1, and a non-empty frame after 5 bytes. */
        if (len <= 5 || (b[0] & 0x80) || (b[0] >> 4) == 5 || b[1] != 1) return 0;
        codec = (b[0] & 0x0F) == 7 ? AVC1 : (b[0] & 0x0F) == 12 ? HVC1 : NULL;
        if (codec == NULL) return 0;
    } else if (len < 2 || (b[0] >> 4) != 10 || b[1] != 1) {
        return 0; /* parse_audio: sound format 10 (AAC), AAC packet type 1 (raw frame) */
    }
    PyObject *sid = PyLong_FromUnsignedLong(cs->stream_id);
    if (sid == NULL) return -1;
    int wanted = PySet_Contains(self->publishing, sid);
    if (wanted <= 0) {
        Py_DECREF(sid);
        return wanted;
    }
    PyObject *event = NULL;
    PyObject *dts = PyLong_FromLongLong(cs->timestamp);
    if (video) {
        int32_t cto = (int32_t)((uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4]);
        if (cto & 0x800000) cto -= 0x1000000;
        int frame_type = b[0] >> 4;
        PyObject *pts = PyLong_FromLongLong(cs->timestamp + cto);
        PyObject *data = PyBytes_FromStringAndSize((const char *)b + 5, len - 5);
        if (dts != NULL && pts != NULL && data != NULL) {
            PyObject *key = (frame_type == 1 || frame_type == 4) ? Py_True : Py_False;
            PyObject *args[6] = {sid, codec, dts, pts, key, data};
            event = PyObject_Vectorcall(self->video_frame, args, 6, NULL);
        }
        Py_XDECREF(pts);
        Py_XDECREF(data);
    } else {
        PyObject *data = PyBytes_FromStringAndSize((const char *)b + 2, len - 2);
        if (dts != NULL && data != NULL) {
            PyObject *args[4] = {sid, codec, dts, data};
            event = PyObject_Vectorcall(self->audio_frame, args, 4, NULL);
        }
        Py_XDECREF(data);
    }
    Py_DECREF(sid);
    Py_XDECREF(dts);
    if (event == NULL) return -1;
    int rc = PyList_Append(out, event);
    Py_DECREF(event);
    return rc < 0 ? -1 : 1;
}

/* A complete message: hand it out, or apply it if it is a protocol control message. */
static int complete(Reader *self, Stream *cs, PyObject *payload, PyObject *out) {
    if (cs->type_id == 8 || cs->type_id == 9) {
        int lane = media_lane(self, cs, payload, out);
        if (lane != 0) {
            Py_DECREF(payload);
            return lane < 0 ? -1 : 0;
        }
    } else if (cs->type_id > 2) {
        self->lane_open = 0;
    }
    if (cs->type_id > 2) return emit(cs, payload, out);
    int rc = control(self, cs->type_id, (const unsigned char *)PyBytes_AS_STRING(payload),
                     PyBytes_GET_SIZE(payload));
    Py_DECREF(payload);
    return rc;
}

/* Bytes of the open message that the chunks from ``q`` on will bring in this read: its
 * type-3 continuations, in a row and complete (what the parser will consume next). */
static Py_ssize_t present(const Stream *cs, const unsigned char *buf, Py_ssize_t n,
                          Py_ssize_t q, uint32_t rem, Py_ssize_t csz) {
    Py_ssize_t got = 0;
    while (rem && q < n) {
        unsigned char b0 = buf[q];
        if (b0 >> 6 != 3) break;
        uint32_t csid = b0 & 0x3F;
        q += 1;
        if (csid == 0) {
            if (q >= n) break;
            csid = (uint32_t)buf[q] + 64;
            q += 1;
        } else if (csid == 1) {
            if (q + 1 >= n) break;
            csid = (uint32_t)buf[q] + ((uint32_t)buf[q + 1] << 8) + 64;
            q += 2;
        }
        if (csid != cs->csid) break;
        if (cs->ext) {
            if (q + 4 > n) break;
            if (memcmp(buf + q, cs->ext_bytes, 4) == 0) q += 4;
        }
        Py_ssize_t take = (Py_ssize_t)rem < csz ? (Py_ssize_t)rem : csz;
        if (q + take > n) break;
        q += take;
        got += take;
        rem -= (uint32_t)take;
    }
    return got;
}

/* Copy ``take`` bytes (a chunk ending at ``q`` in ``buf[0:n]``) into the open message. When
 * its buffer must grow, it grows by what this read holds of the message, so it is never larger
 * than the bytes of the message received: a peer cannot make us reserve what it never sends.
 * A message that arrives within one read gets one buffer of its exact size, handed out as is. */
static int gather(Reader *self, Stream *cs, const unsigned char *buf, Py_ssize_t n,
                  Py_ssize_t q, Py_ssize_t take) {
    Py_ssize_t need = cs->have + take;
    Py_ssize_t size = cs->msg ? PyBytes_GET_SIZE(cs->msg) : 0;
    if (need > size) {
        uint32_t rem = cs->length - (uint32_t)need;
        Py_ssize_t grow = need + present(cs, buf, n, q, rem, self->chunk_size);
        if (cs->msg == NULL) {
            cs->msg = PyBytes_FromStringAndSize(NULL, grow);
            if (cs->msg == NULL) return -1;
        } else if (_PyBytes_Resize(&cs->msg, grow) < 0) {
            return -1;
        }
    }
    memcpy(PyBytes_AS_STRING(cs->msg) + cs->have, buf + q - take, (size_t)take);
    cs->have = need;
    return 0;
}

static PyObject *too_long(Reader *self, uint32_t length, uint32_t csid) {
    PyErr_Format(self->ProtocolError, "message of %u bytes on chunk stream %u exceeds %U=%u",
                 length, csid, self->max_message_name, self->max_message);
    return NULL;
}

static void header_while_open(Reader *self, Stream *cs) {
    PyErr_Format(self->ProtocolError,
                 "chunk stream %u: new message header while %u bytes of the previous one are "
                 "missing",
                 cs->csid, cs->remaining);
}

static inline uint32_t be24(const unsigned char *p) {
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static inline uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Where a new message's first chunk (from ``p``) ends: 0 when it has not all arrived, -1
 * (error set) when the chunk stream still has a message open, 1 otherwise. */
static inline int first_chunk(Reader *self, Stream *cs, uint32_t length, Py_ssize_t p,
                              Py_ssize_t n, Py_ssize_t *take, Py_ssize_t *end) {
    Py_ssize_t csz = self->chunk_size;
    *take = (Py_ssize_t)length < csz ? (Py_ssize_t)length : csz;
    *end = p + *take;
    if (*end > n) return 0;
    if (cs->remaining) {
        header_while_open(self, cs);
        return -1;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* The parser: consumes whole chunks of buf[0:n]; returns the bytes consumed, -1 on error. */

static Py_ssize_t parse(Reader *self, const unsigned char *buf, Py_ssize_t n, PyObject *out) {
    Py_ssize_t pos = 0;
    while (pos < n) {
        unsigned char b0 = buf[pos];
        uint32_t csid = b0 & 0x3F;
        Py_ssize_t p = pos + 1;
        if (csid < 2) {
            if (csid == 0) {
                if (p >= n) break;
                csid = (uint32_t)buf[p] + 64;
                p += 1;
            } else {
                if (p + 1 >= n) break;
                csid = (uint32_t)buf[p] + ((uint32_t)buf[p + 1] << 8) + 64;
                p += 2;
            }
        }
        Stream *cs = find_stream(self, csid);
        if (cs == NULL) {
            cs = new_stream(self, csid);
            if (cs == NULL) return -1;
        }
        Py_ssize_t csz = self->chunk_size;
        int fmt = b0 >> 6;
        uint32_t length;
        Py_ssize_t take, end;
        int ready;
        if (fmt == 3) {
            if (!cs->started) {
                PyErr_Format(self->ProtocolError, "chunk stream %u starts with a type-3 header",
                             csid);
                return -1;
            }
            /* The spec repeats the extended timestamp on type-3 chunks; some encoders do
             * not. Take the four bytes only if they repeat it. */
            if (cs->ext) {
                if (p + 4 > n) break;
                if (memcmp(buf + p, cs->ext_bytes, 4) == 0) p += 4;
            }
            uint32_t rem = cs->remaining;
            if (rem) {
                /* Continuation of the open message. */
                take = (Py_ssize_t)rem < csz ? (Py_ssize_t)rem : csz;
                end = p + take;
                if (end > n) break;
                if (gather(self, cs, buf, n, end, take) < 0) return -1;
                pos = end;
                rem -= (uint32_t)take;
                cs->remaining = rem;
                if (rem) continue;
                PyObject *payload = cs->msg;
                cs->msg = NULL;
                cs->have = 0;
                if (complete(self, cs, payload, out) < 0) return -1;
                continue;
            }
            /* Type 3 starting a new message: same length/type/stream, same delta. */
            length = cs->length;
            if ((ready = first_chunk(self, cs, length, p, n, &take, &end)) <= 0) {
                if (ready < 0) return -1;
                break;
            }
            cs->raw += cs->delta;
            cs->timestamp += signed_delta(cs->delta);
        } else {
            /* Type 0 (11 bytes), 1 (7) or 2 (3): the timestamp field, then the length and
             * type (0, 1), then the message stream id (0), then an extended timestamp. */
            Py_ssize_t size = fmt == 0 ? 11 : fmt == 1 ? 7 : 3;
            if (p + size > n) break;
            uint32_t stamp = be24(buf + p);
            length = fmt < 2 ? be24(buf + p + 3) : cs->length;
            uint32_t type_id = fmt < 2 ? buf[p + 6] : cs->type_id;
            /* Little-endian, and only in a type-0 header (the others end before it). */
            uint32_t sid = fmt == 0 ? (uint32_t)buf[p + 7] | (uint32_t)buf[p + 8] << 8 |
                                          (uint32_t)buf[p + 9] << 16 | (uint32_t)buf[p + 10] << 24
                                    : 0;
            p += size;
            int ext = stamp == EXTENDED;
            if (ext) {
                if (p + 4 > n) break;
                stamp = be32(buf + p);
                p += 4;
            }
            if (fmt < 2 && length > self->max_message) {
                too_long(self, length, csid);
                return -1;
            }
            if (fmt == 2 && !cs->started) {
                PyErr_Format(self->ProtocolError, "chunk stream %u starts with a type-2 header",
                             csid);
                return -1;
            }
            if ((ready = first_chunk(self, cs, length, p, n, &take, &end)) <= 0) {
                if (ready < 0) return -1;
                break;
            }
            if (fmt == 0) {
                /* An absolute timestamp: unwrapped as the nearest value to the previous one. */
                if (cs->started) {
                    cs->timestamp += signed_delta(stamp - cs->raw);
                } else {
                    cs->timestamp = stamp;
                }
                cs->raw = stamp;
                cs->stream_id = sid;
            } else {
                /* A delta. A type-1 header on a fresh chunk stream is tolerated: it only lacks
                 * the stream id (0) and the base timestamp (0). */
                cs->raw += stamp;
                cs->timestamp += signed_delta(stamp);
            }
            cs->started = 1;
            cs->delta = stamp;
            cs->length = length;
            cs->type_id = type_id;
            cs->ext = ext;
            if (ext) memcpy(cs->ext_bytes, buf + p - 4, 4);
        }
        /* First chunk of a new message (header already committed above). */
        pos = end;
        if (take == (Py_ssize_t)length) {
            PyObject *payload = PyBytes_FromStringAndSize((const char *)buf + p, take);
            if (payload == NULL) return -1;
            if (complete(self, cs, payload, out) < 0) return -1;
        } else {
            Py_CLEAR(cs->msg);
            cs->have = 0;
            if (gather(self, cs, buf, n, end, take) < 0) return -1;
            cs->remaining = length - (uint32_t)take;
        }
    }
    return pos;
}

/* ---------------------------------------------------------------------------------------- */
/* Input buffer */

static int buf_append(Reader *self, const unsigned char *data, Py_ssize_t len) {
    if (len == 0) return 0;
    if (self->buf_len + len > self->buf_cap) {
        Py_ssize_t cap = self->buf_cap * 2;
        if (cap < self->buf_len + len) cap = self->buf_len + len;
        unsigned char *buf = PyMem_Realloc(self->buf, (size_t)cap);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->buf = buf;
        self->buf_cap = cap;
    }
    memcpy(self->buf + self->buf_len, data, (size_t)len);
    self->buf_len += len;
    return 0;
}

static void buf_consume(Reader *self, Py_ssize_t used) {
    if (used >= self->buf_len) {
        self->buf_len = 0;
    } else if (used > 0) {
        memmove(self->buf, self->buf + used, (size_t)(self->buf_len - used));
        self->buf_len -= used;
    }
    /* Do not keep a large buffer for a connection that no longer needs one. */
    if (self->buf_len == 0 && self->buf_cap > 65536) {
        PyMem_Free(self->buf);
        self->buf = NULL;
        self->buf_cap = 0;
    }
}

/* Parse ``data`` after whatever is buffered; keep what remains of it. */
static int feed_bytes(Reader *self, const unsigned char *data, Py_ssize_t len, PyObject *out) {
    Py_ssize_t off = 0;
    if (self->buf_len) {
        /* The buffered incomplete chunk needs at most a header and a chunk more: append that
         * much, parse, and carry on in ``data`` itself once the parser has moved past it. */
        Py_ssize_t old = self->buf_len;
        Py_ssize_t first = (Py_ssize_t)self->chunk_size + MAX_HEADER;
        if (first > len) first = len;
        if (buf_append(self, data, first) < 0) return -1;
        Py_ssize_t used = parse(self, self->buf, self->buf_len, out);
        if (used < 0) return -1;
        if (used < old) {
            /* Still inside the buffered bytes (only when ``data`` ran out): keep it all. */
            buf_consume(self, used);
            if (buf_append(self, data + first, len - first) < 0) return -1;
            used = parse(self, self->buf, self->buf_len, out);
            if (used < 0) return -1;
            buf_consume(self, used);
            return 0;
        }
        off = used - old;
        self->buf_len = 0;
    }
    Py_ssize_t used = parse(self, data + off, len - off, out);
    if (used < 0) return -1;
    if (buf_append(self, data + off + used, len - off - used) < 0) return -1;
    buf_consume(self, 0);
    return 0;
}

static PyObject *Reader_feed(Reader *self, PyObject *arg) {
    if (self->error != NULL) {
        PyErr_Format(self->ProtocolError, "chunk stream already failed: %U", self->error);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    self->lane_open = 1;
    int rc = feed_bytes(self, view.buf, view.len, out);
    PyBuffer_Release(&view);
    if (rc == 0) {
        int64_t pending = 0;
        for (Py_ssize_t s = 0; s < self->nstreams; s++) {
            if (self->streams[s].remaining) pending += self->streams[s].have;
        }
        if (pending > (int64_t)self->max_message) {
            PyErr_Format(self->ProtocolError,
                         "partially received messages hold %lld bytes, more than %U=%u",
                         (long long)pending, self->max_message_name, self->max_message);
            rc = -1;
        }
    }
    if (rc == 0) return out;
    Py_DECREF(out);
    /* Fail for good, and let go of everything the stream held. */
    drop_messages(self);
    self->buf_len = 0;
    buf_consume(self, 0);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (type != NULL && PyErr_GivenExceptionMatches(type, self->ProtocolError)) {
        self->error = PyObject_Str(value);
        if (self->error == NULL) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    /* Anything else (out of memory) must still look like a dead stream to the caller. */
    self->error = PyUnicode_FromFormat("internal error in chunk parser: %R", value);
    if (self->error == NULL) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    PyErr_SetObject(self->ProtocolError, self->error);
    PyObject *t2, *v2, *tb2;
    PyErr_Fetch(&t2, &v2, &tb2);
    PyErr_NormalizeException(&t2, &v2, &tb2);
    if (v2 != NULL && value != NULL) {
        PyException_SetCause(v2, value); /* steals value */
        value = NULL;
    }
    PyErr_Restore(t2, v2, tb2);
    Py_XDECREF(value);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return NULL;
}

static PyObject *Reader_limit_message_size(Reader *self, PyObject *args) {
    unsigned long size;
    PyObject *name;
    if (!PyArg_ParseTuple(args, "kU:limit_message_size", &size, &name)) return NULL;
    if (size > 0xFFFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "message size limit outside 0..2**32-1");
        return NULL;
    }
    self->max_message = (uint32_t)size;
    Py_INCREF(name);
    Py_SETREF(self->max_message_name, name);
    Py_RETURN_NONE;
}

static PyObject *Reader_media_lane(Reader *self, PyObject *args) {
    PyObject *publishing, *video, *audio;
    if (!PyArg_ParseTuple(args, "O!OO:media_lane", &PySet_Type, &publishing, &video, &audio))
        return NULL;
    Py_INCREF(publishing);
    Py_XSETREF(self->publishing, publishing);
    Py_INCREF(video);
    Py_XSETREF(self->video_frame, video);
    Py_INCREF(audio);
    Py_XSETREF(self->audio_frame, audio);
    Py_RETURN_NONE;
}

static int Reader_init(Reader *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_chunk_size", "max_message_size", "max_chunk_streams",
                             "error", NULL};
    unsigned long max_chunk, max_message, max_streams;
    PyObject *error;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "kkkO", kwlist, &max_chunk, &max_message,
                                     &max_streams, &error))
        return -1;
    if (!PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "error must be an exception class");
        return -1;
    }
    if (max_chunk > 0x7FFFFFFFul || max_message > 0xFFFFFFFFul || max_streams > 0x10000ul) {
        PyErr_SetString(PyExc_ValueError, "limit out of range");
        return -1;
    }
    self->chunk_size = 128;
    self->max_chunk_size = (uint32_t)max_chunk;
    self->max_message = (uint32_t)max_message;
    self->max_streams = (uint32_t)max_streams;
    PyObject *name = PyUnicode_FromString("max_message_size");
    if (name == NULL) return -1;
    Py_XSETREF(self->max_message_name, name);
    Py_INCREF(error);
    Py_XSETREF(self->ProtocolError, error);
    return 0;
}

static void Reader_dealloc(Reader *self) {
    drop_messages(self);
    PyMem_Free(self->streams);
    PyMem_Free(self->index);
    PyMem_Free(self->buf);
    Py_XDECREF(self->max_message_name);
    Py_XDECREF(self->error);
    Py_XDECREF(self->ProtocolError);
    Py_XDECREF(self->publishing);
    Py_XDECREF(self->video_frame);
    Py_XDECREF(self->audio_frame);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Both types start with the chunk size (HasChunkSize's layout), so they share its accessors. */
typedef struct {
    PyObject_HEAD
    uint32_t chunk_size;
} HasChunkSize;

static int chunk_size_from(PyObject *value, uint32_t *out) {
    unsigned long size = PyLong_AsUnsignedLong(value);
    if (size == (unsigned long)-1 && PyErr_Occurred()) return -1;
    if (size == 0 || size > 0x7FFFFFFFul) {
        PyErr_SetString(PyExc_ValueError, "chunk size outside 1..2147483647");
        return -1;
    }
    *out = (uint32_t)size;
    return 0;
}

static PyObject *get_chunk_size(PyObject *self, void *closure) {
    return PyLong_FromUnsignedLong(((HasChunkSize *)self)->chunk_size);
}

static int set_chunk_size(PyObject *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "chunk_size cannot be deleted");
        return -1;
    }
    return chunk_size_from(value, &((HasChunkSize *)self)->chunk_size);
}

static PyObject *Reader_get_buffered(Reader *self, void *closure) {
    return PyLong_FromSsize_t(self->buf_len);
}

static PyMethodDef Reader_methods[] = {
    {"feed", (PyCFunction)Reader_feed, METH_O,
     "feed(data) -> list of (type_id, message stream id, timestamp, payload)"},
    {"limit_message_size", (PyCFunction)Reader_limit_message_size, METH_VARARGS,
     "limit_message_size(size, name): bound messages from the next feed on"},
    {"media_lane", (PyCFunction)Reader_media_lane, METH_VARARGS,
     "media_lane(publishing, VideoFrame, AudioFrame): hand out the common media messages of "
     "the stream ids in the set as events"},
    {NULL},
};

static PyGetSetDef Reader_getset[] = {
    {"chunk_size", get_chunk_size, set_chunk_size, "the peer's chunk size in effect", NULL},
    {"buffered", (getter)Reader_get_buffered, NULL,
     "bytes received but not yet consumed (an incomplete chunk)", NULL},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mediaserver.rtmp._chunks.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "RTMP chunk stream reader (see chunk.py's PyChunkReader for the reference).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Reader_init,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_getset = Reader_getset,
};

/* ---------------------------------------------------------------------------------------- */
/* The writer: chunk_out.MessageChunker in C, for the restream send path.
 *
 * Every frame a relay sends passes through it once per destination, so it builds each message
 * in one bytes object of the exact size: the header, the few bytes in front of the frame and
 * the frame's chunks with their continuation headers, each copied once. The header choice
 * (type 0/1/2/3, the extended timestamp) is chunk_out.py's, which stays the reference: the
 * tests require byte-identical output from both. */

typedef struct {
    uint32_t csid;
    int64_t stream_id;  /* -1: nothing sent on this chunk stream yet */
    int64_t length;
    int64_t type_id;
    int64_t timestamp;
    int64_t delta;      /* delta the last type 1/2 header stated; -1 after a type-0 header */
} Last;

typedef struct {
    PyObject_HEAD
    uint32_t chunk_size;
    Last *last;
    Py_ssize_t nlast;
    Py_ssize_t cap;
} Chunker;

static Py_ssize_t put_basic(unsigned char *out, int fmt, uint32_t csid) {
    if (csid <= 63) {
        out[0] = (unsigned char)(fmt << 6 | csid);
        return 1;
    }
    if (csid <= 319) {
        out[0] = (unsigned char)(fmt << 6);
        out[1] = (unsigned char)(csid - 64);
        return 2;
    }
    out[0] = (unsigned char)(fmt << 6 | 1);
    out[1] = (unsigned char)((csid - 64) & 0xFF);
    out[2] = (unsigned char)((csid - 64) >> 8);
    return 3;
}

static inline void put_be24(unsigned char *out, uint32_t v) {
    out[0] = (unsigned char)(v >> 16);
    out[1] = (unsigned char)(v >> 8);
    out[2] = (unsigned char)v;
}

static PyObject *Chunker_message(Chunker *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "message(csid, type_id, stream_id, timestamp, head, body=b'')");
        return NULL;
    }
    long csid_l = PyLong_AsLong(args[0]);
    if (csid_l == -1 && PyErr_Occurred()) return NULL;
    long type_l = PyLong_AsLong(args[1]);
    if (type_l == -1 && PyErr_Occurred()) return NULL;
    long long sid = PyLong_AsLongLong(args[2]);
    if (sid == -1 && PyErr_Occurred()) return NULL;
    long long timestamp = PyLong_AsLongLong(args[3]);
    if (timestamp == -1 && PyErr_Occurred()) return NULL;
    if (csid_l < 2 || csid_l > 65599) {
        PyErr_Format(PyExc_ValueError, "chunk stream id %ld is outside 2..65599", csid_l);
        return NULL;
    }
    if (type_l < 0 || type_l > 255) {
        PyErr_Format(PyExc_ValueError, "message type %ld is outside 0..255", type_l);
        return NULL;
    }
    uint32_t csid = (uint32_t)csid_l;
    Py_buffer head, body;
    if (PyObject_GetBuffer(args[4], &head, PyBUF_SIMPLE) < 0) return NULL;
    if (nargs == 6) {
        if (PyObject_GetBuffer(args[5], &body, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&head);
            return NULL;
        }
    } else {
        memset(&body, 0, sizeof(body));
    }
    PyObject *result = NULL;
    Py_ssize_t hl = head.len, bl = body.len, length = hl + bl;
    Py_ssize_t size = self->chunk_size;
    if (length > 0xFFFFFF) {
        PyErr_Format(PyExc_ValueError, "message of %zd bytes does not fit the 24-bit length",
                     length);
        goto done;
    }
    if (length > size && hl > size) {
        PyErr_SetString(PyExc_ValueError, "the head of a message must fit in its first chunk");
        goto done;
    }
    Last *last = NULL;
    for (Py_ssize_t i = 0; i < self->nlast; i++) {
        if (self->last[i].csid == csid) {
            last = &self->last[i];
            break;
        }
    }
    if (last == NULL) {
        if (room_for_one((void **)&self->last, self->nlast, &self->cap, sizeof(Last)) < 0)
            goto done;
        last = &self->last[self->nlast++];
        last->csid = csid;
        last->stream_id = -1;
        last->length = -1;
        last->type_id = -1;
        last->timestamp = 0;
        last->delta = -1;
    }
    unsigned char header[3 + 11 + 4];
    Py_ssize_t n;
    uint32_t field;
    /* The exact difference of two int64s, as Python computes it. */
    __int128 wide = (__int128)timestamp - (__int128)last->timestamp;
    if (last->stream_id != sid || wide < 0 || wide > 0xFFFFFFFFLL) {
        field = (uint32_t)((uint64_t)timestamp & 0xFFFFFFFFu);
        uint32_t t24 = field >= EXTENDED ? EXTENDED : field;
        n = put_basic(header, 0, csid);
        put_be24(header + n, t24);
        put_be24(header + n + 3, (uint32_t)length);
        header[n + 6] = (unsigned char)type_l;
        uint32_t sid32 = (uint32_t)((uint64_t)sid & 0xFFFFFFFFu);
        header[n + 7] = (unsigned char)sid32;
        header[n + 8] = (unsigned char)(sid32 >> 8);
        header[n + 9] = (unsigned char)(sid32 >> 16);
        header[n + 10] = (unsigned char)(sid32 >> 24);
        n += 11;
        last->stream_id = sid;
        last->length = length;
        last->type_id = type_l;
        last->delta = -1;
    } else {
        int64_t delta = (int64_t)wide;
        field = (uint32_t)delta;
        uint32_t t24 = field >= EXTENDED ? EXTENDED : field;
        if (last->length != length || last->type_id != type_l) {
            n = put_basic(header, 1, csid);
            put_be24(header + n, t24);
            put_be24(header + n + 3, (uint32_t)length);
            header[n + 6] = (unsigned char)type_l;
            n += 7;
            last->length = length;
            last->type_id = type_l;
        } else if (last->delta != delta) {
            n = put_basic(header, 2, csid);
            put_be24(header + n, t24);
            n += 3;
        } else {
            n = put_basic(header, 3, csid);
        }
        last->delta = delta;
    }
    last->timestamp = timestamp;
    int ext = field >= EXTENDED;
    unsigned char cont[3 + 4];
    Py_ssize_t cl = put_basic(cont, 3, csid);
    if (ext) {
        unsigned char stamp[4] = {(unsigned char)(field >> 24), (unsigned char)(field >> 16),
                                  (unsigned char)(field >> 8), (unsigned char)field};
        memcpy(header + n, stamp, 4);
        n += 4;
        memcpy(cont + cl, stamp, 4);
        cl += 4;
    }
    Py_ssize_t conts = length > size ? (length - 1) / size : 0; /* continuation chunks */
    result = PyBytes_FromStringAndSize(NULL, n + length + conts * cl);
    if (result == NULL) goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    memcpy(out, header, (size_t)n);
    out += n;
    memcpy(out, head.buf, (size_t)hl);
    out += hl;
    const unsigned char *src = body.buf;
    Py_ssize_t take = length <= size ? bl : size - hl;
    if (take > 0) memcpy(out, src, (size_t)take); /* no body: src may be NULL */
    out += take;
    for (Py_ssize_t at = take; at < bl; at += size) {
        memcpy(out, cont, (size_t)cl);
        out += cl;
        Py_ssize_t piece = bl - at < size ? bl - at : size;
        memcpy(out, src + at, (size_t)piece);
        out += piece;
    }
done:
    PyBuffer_Release(&head);
    if (nargs == 6) PyBuffer_Release(&body);
    return result;
}

static int Chunker_init(Chunker *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"chunk_size", NULL};
    PyObject *size = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O", kwlist, &size)) return -1;
    self->chunk_size = 128;
    return size == NULL ? 0 : chunk_size_from(size, &self->chunk_size);
}

static void Chunker_dealloc(Chunker *self) {
    PyMem_Free(self->last);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Chunker_methods[] = {
    {"message", (PyCFunction)(void (*)(void))Chunker_message, METH_FASTCALL,
     "message(csid, type_id, stream_id, timestamp, head, body=b'') -> the message's chunks"},
    {NULL},
};

static PyGetSetDef Chunker_getset[] = {
    {"chunk_size", get_chunk_size, set_chunk_size, "the chunk size messages are split at", NULL},
    {NULL},
};

static PyTypeObject ChunkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "mediaserver.rtmp._chunks.Chunker",
    .tp_basicsize = sizeof(Chunker),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "RTMP message chunker (see chunk_out.py's PyMessageChunker for the reference).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Chunker_init,
    .tp_dealloc = (destructor)Chunker_dealloc,
    .tp_methods = Chunker_methods,
    .tp_getset = Chunker_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mediaserver.rtmp._chunks",
    .m_doc = "Compiled RTMP chunk stream reader and message chunker.",
    .m_size = -1,
};

static int add_type(PyObject *module, PyTypeObject *type, const char *name) {
    if (PyType_Ready(type) < 0) return -1;
    Py_INCREF(type);
    if (PyModule_AddObject(module, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__chunks(void) {
    if (AVC1 == NULL) {
        AVC1 = PyUnicode_InternFromString("avc1");
        HVC1 = PyUnicode_InternFromString("hvc1");
        MP4A = PyUnicode_InternFromString("mp4a");
        if (AVC1 == NULL || HVC1 == NULL || MP4A == NULL) return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (add_type(m, &ReaderType, "Reader") < 0 || add_type(m, &ChunkerType, "Chunker") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
