// What this layer builds on, visible to its files and to everyone who imports it.
@_exported import RematCore
@_exported import RematIO
