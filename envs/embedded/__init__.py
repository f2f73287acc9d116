"""The embedded world: seeded procedural apartments rendered by MuJoCo (RGB, depth, instance ids),
navigated on an occupancy grid, with Habitat ObjectNav semantics (actions, collisions, metrics).

Import the pieces from their modules (`envs.embedded.world`, `.task`, `.scene`, ...); this package
file stays import-light so `import envs.embedded.config` never pulls in MuJoCo.
"""
