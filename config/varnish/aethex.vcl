vcl 4.1;

# AeThex Live behind Varnish 7.1 (Debian's varnishd): LL-HLS cached and collapsed, everything
# else passed through untouched.
#
#   varnishd -a :6081 -f /etc/varnish/aethex.vcl -s malloc,256m -p thread_pool_min=20 \
#       -p thread_pool_max=50 -p thread_queue_limit=20000 -p rush_exponent=1000
#
# Threads (thread_pool_min/max are per pool, 2 pools by default): size them to the work that
# must run at the same time, not to the number of players. A player waiting for a part holds
# no thread (its request is parked on the object's waiting list), and answering a hit takes a
# thread for some tens of microseconds. What does hold a thread: each blocking playlist fill
# in flight (about one per watched rendition, for up to a part's duration), a delivery to a
# client slower than its socket buffer, a download passed to the origin, and a piped
# WebSocket (the kit's nginx sends chat and downloads to the web nodes, not here). Varnish's
# defaults let a burst of players start a thread each, and on a 2-core edge 2,000 threads
# woken together spend more CPU switching and contending than answering. benchmarks/cluster.py
# at 2,000 players, medians of 3 runs: varnishd 59 % of a core (35 us per request) and part
# delay p50/p99 85/168 ms with a thread per player, 32 % (19 us) and 47/107 ms with these pools
# (40/89 ms since the benchmark's publisher and viewers take less of the cores).
# thread_queue_limit lets such a burst wait for a thread instead of being dropped (Varnish
# queues 20 by default). With more watched renditions than about half of the threads, raise
# thread_pool_max. A client that stops reading keeps its thread for up to send_timeout (600 s
# by default): on an edge that serves only /hls/ and /vod/, as behind the kit's nginx, a
# send_timeout of 20 s bounds that; parts and segments take far less to send.
#
# An earlier version of this file recommended timeout_linger=1 (a thread stays with a player's
# connection for a second), which helped while every player had its own thread; with bounded
# pools a lingering thread is one the queued burst cannot use, so keep the default 50 ms (at
# 2,000 players with these pools, timeout_linger=1 measured p99 124 ms against 104-111).
#
# rush_exponent=1000: when the origin answers, every player parked on that object is woken at
# once instead of 3 more per finished delivery. Every one of them is a cache hit (they asked for
# the same part or the same blocking reload), so the stepwise wake-up only queues them: with
# 2,000 players a part's requests arrive within a few ms of each other and most of them wait
# for the part's fetch. Varnish's own waiting-list rework (for 8.0) rushes such hits all at
# once for the same reason. Measured at 2,000 players through Varnish, 3 runs each: part delay
# p50 85 ms against 109 ms, p99 168 against 202 ms.
#
# What it relies on (webapp/hls/reply.py sends these headers):
# - Parts, segments and init sections under the per-broadcast token
#   (/hls/{slug}/{token}/{rendition}/part3.1.m4s) never change: "immutable", kept as long as the
#   origin says (the LRU of -s malloc drops them once they leave the live window).
# - A blocking playlist reload (?_HLS_msn=N&_HLS_part=M[&_HLS_skip=YES]) is answered by the
#   origin once that part exists, with "public, max-age=1". The cache key is the path (slug,
#   token, rendition) plus only the _HLS_* directives, sorted, so every player waiting for the
#   same part shares one object: the first request goes to the origin, the others wait on
#   Varnish's waiting list and are woken the moment the origin answers. Varnish only collapses
#   what it may store, which is why the origin never answers these "no-cache".
# - Requests sent from here carry X-AeThex-Cache-Fill: the origin then answers the master
#   playlist without a per-viewer session ("public, max-age=1") and the plain media playlist
#   "public, max-age=1", and does not count the fetch as a viewer.
# - Viewers are counted by the player's beacon, GET /hls/{slug}/watching?session=..., which is
#   passed to the origin with the client's address in X-Forwarded-For (turn on
#   http.trust_forwarded_for on the nodes behind this cache).
# - Pages, the API, login, chat (WebSocket upgrades), POSTs and /metrics are passed through.
#
# The backend is any node: one that does not own a live stream fetches it from the origin that
# does (aethex:origin:{slug} in Redis), so a round-robin director over the web nodes works too.

import std;

# Fronts that put the client's address in X-Forwarded-For themselves (the nginx of
# config/nginx/aethex.conf on this machine). Varnish appends the address it was connected from;
# behind a front that is the front, and the nodes take the last entry as the viewer's address,
# so for these peers that last entry is dropped again. List your fronts' addresses here.
acl aethex_fronts {
    "127.0.0.1";
    "::1";
}

backend aethex {
    .host = "127.0.0.1";
    .port = "8080";
    # Above a blocking reload's hold (three target durations) plus a cross-node hop.
    .first_byte_timeout = 20s;
    .between_bytes_timeout = 10s;
    .connect_timeout = 2s;
}

sub vcl_recv {
    # Only this cache may mark its fetches as cache fills, and only nodes mark a request as
    # forwarded by another node (a client's would turn its shared fetch into a 404).
    unset req.http.X-AeThex-Cache-Fill;
    unset req.http.X-AeThex-Forwarded-By;
    if (client.ip ~ aethex_fronts && req.http.X-Forwarded-For ~ ",") {
        set req.http.X-Forwarded-For = regsub(req.http.X-Forwarded-For, "\s*,[^,]*$", "");
    }

    if (req.http.Upgrade ~ "(?i)websocket") {
        return (pipe);  # chat: /ws/chat/{slug}
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);  # POSTs (forms, API), CORS preflights, anything else
    }
    if (req.url ~ "^/hls/[^/]+/watching(\?|$)") {
        return (pass);  # the viewer beacon: every one must reach the origin
    }
    if (req.url ~ "^/hls/") {
        # Keep only the LL-HLS delivery directives: a session id (or any other parameter)
        # in the key would give every viewer a private copy and defeat collapsing.
        set req.url = regsuball(req.url, "(?<=[?&])(?!_HLS_(msn|part|skip)=)[^&]*(&|$)", "");
        set req.url = regsub(req.url, "[?&]+$", "");
        set req.url = std.querysort(req.url);
        unset req.http.Cookie;
        unset req.http.Authorization;
        set req.http.X-AeThex-Cache-Fill = "1";
        return (hash);
    }
    if (req.url ~ "^/(vod|static)/") {
        # Recordings (access is in the path: the stream id or a grant) and static assets:
        # cached as the origin's Cache-Control says.
        unset req.http.Cookie;
        return (hash);
    }
    # Pages, /api/, /auth/, /dashboard, /metrics...: per user, never stored here.
    return (pass);
}

sub vcl_pipe {
    # WebSocket: the upgrade headers must reach the origin (Varnish drops Connection).
    if (req.http.Upgrade) {
        set bereq.http.Upgrade = req.http.Upgrade;
        set bereq.http.Connection = req.http.Connection;
    }
}

sub vcl_hash {
    # The URL alone: every Host name the site answers to shares one copy.
    hash_data(req.url);
    return (lookup);
}

sub vcl_backend_response {
    if (bereq.url ~ "^/hls/") {
        if (beresp.status >= 400 || beresp.http.Cache-Control ~ "(?i)no-cache|no-store|private") {
            # Not stored: an error (a part that is 404 now may exist in a moment) or what the
            # origin says must be revalidated (the untokened short URLs, a viewer's own master).
            # For a second the requests for this URL go straight to the origin instead of
            # queueing behind one another.
            set beresp.ttl = 1s;
            set beresp.grace = 0s;
            set beresp.uncacheable = true;
            return (deliver);
        }
        if (bereq.url ~ "\.m3u8(\?|$)") {
            # Playlists: the origin's short max-age, never served stale (a stale playlist
            # would send players after parts that are not announced yet).
            set beresp.grace = 0s;
            set beresp.keep = 0s;
        } elsif (beresp.ttl > 1h) {
            # Live media leaves the window within a minute; an hour is plenty here (the
            # players still get the origin's "immutable" year).
            set beresp.ttl = 1h;
        }
        return (deliver);
    }
}

sub vcl_deliver {
    # For operators (and the tests): whether this answer came from the cache.
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
