#!/usr/bin/env python3
"""Pack a fuzz corpus directory into one file, or unpack it again.

The seed corpora in fuzz/seeds/<target>.corpus.gz hold thousands of small inputs; one gzip
file of length-delimited inputs (a varint length, then the bytes) keeps the repository
tidy. `cargo test` replays them (tests/fuzz_regressions.rs); libFuzzer wants a directory:

    scripts/fuzz-corpus.py unpack fuzz/seeds/pbgz_stream.corpus.gz fuzz/corpus/pbgz_stream
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none pbgz_stream
    # after a run: keep a minimal set covering what the corpus reaches, then pack it
    fuzz/target/x86_64-unknown-linux-gnu/release/pbgz_stream -merge=1 /tmp/min fuzz/corpus/pbgz_stream
    scripts/fuzz-corpus.py pack /tmp/min fuzz/seeds/pbgz_stream.corpus.gz
"""
import gzip
import hashlib
import os
import sys


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pack(directory, path):
    names = sorted(os.listdir(directory))
    # mtime 0: the same corpus always packs to the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        for name in names:
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read()
            out.write(varint(len(data)))
            out.write(data)
    print(f"{path}: {len(names)} inputs")


def unpack(path, directory):
    os.makedirs(directory, exist_ok=True)
    with gzip.open(path, "rb") as f:
        data = f.read()
    at, count = 0, 0
    while at < len(data):
        length, shift = 0, 0
        while True:
            byte = data[at]
            at += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        item = data[at : at + length]
        at += length
        # libFuzzer names corpus files by their SHA-1.
        with open(os.path.join(directory, hashlib.sha1(item).hexdigest()), "wb") as f:
            f.write(item)
        count += 1
    print(f"{directory}: {count} inputs")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(sys.argv[2], sys.argv[3])
