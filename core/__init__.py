"""The ground floor: what every room shares, importing none of them.

errors     the one error tree, with messages fit for users
names      names the platform hands out or accepts, and their rules
settings   where the platform keeps its state, and its ports
output     the platform's voice: `-----> ` steps, details, ` !     ` errors
records    plain records passed between floors: Build, Release, Push
dockercli  docker command lines (pure argv builders)
proc       processes on this host: /proc, running a program logged, stopping by PID
"""
