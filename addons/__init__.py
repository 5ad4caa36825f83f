"""Backing services (postgres, redis) as containers the engine supervises: the capability that
makes, runs, links, dumps and restores them. It knows nothing of releases or routing: the
composition (appliance.addons) sets the apps' variables through releases, and the scheduler joins
the apps' containers to the networks named here.

    kinds     what each kind is: port, variable, URL, start script, health check, client, dump
    engine    the docker side: containers, networks, credentials and data under the state dir
"""
