"""The composition: the only floor that composes the capabilities (builders, releaser, scheduler,
routerconf) into what users do.

    platform    the wired-up parts of one platform, built once per process
    pipeline    deploy and roll out a release: build, cut, launch, switch, retire
    operations  scale, restart, one-off runs, processes and their output, destroy
    reconciler  self-healing: running instances equal to the release and formation
    services    bringing dockerd, etcd and the registry up, and supervising them
"""
