"""The binary protocol for tests: request framing, opcodes, and a connection that reads
whole responses."""

import struct

HDR = struct.Struct(">BBHBBHIIQ")
GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH, GETQ, NOOP, VERSION = range(12)
GETK, GETKQ, APPEND, PREPEND, STAT, SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ = range(12, 23)
QUITQ, FLUSHQ, APPENDQ, PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(0x17, 0x1f)
SASL_LIST, SASL_AUTH, GATK, GATKQ = 0x20, 0x21, 0x23, 0x24


def req(op, key=b"", ext=b"", val=b"", cas=0, opaque=0x01020304, bodylen=None, keylen=None):
    bl = len(ext) + len(key) + len(val) if bodylen is None else bodylen
    kl = len(key) if keylen is None else keylen
    return HDR.pack(0x80, op, kl, len(ext), 0, 0, bl, opaque, cas) + ext + key + val


class Bin:
    def __init__(self, server):
        self.c = server.connect()

    def send(self, data):
        self.c.send(data)

    def recv(self):
        """One response: (opcode, status, extras, key, value, opaque, cas)."""
        h = self.c.readexact(24)
        magic, op, kl, el, dt, st, bl, opq, cas = HDR.unpack(h)
        assert magic == 0x81 and dt == 0
        body = self.c.readexact(bl)
        return op, st, body[:el], body[el:el + kl], body[el + kl:], opq, cas

    def call(self, *a, **kw):
        self.send(req(*a, **kw))
        return self.recv()
