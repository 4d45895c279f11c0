"""What a node of a cluster needs to know about itself and to coordinate with the others
(issue 15): its identity and role, the shared Redis, leases on live channels and the routing
of live streams between nodes. One process (role "all", no Redis) uses none of it."""
