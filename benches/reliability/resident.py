#!/usr/bin/env python3
"""Which parts of the binary are resident in a running process: sections and crates."""
import re, struct, subprocess, sys, collections, bisect
pid, exe = int(sys.argv[1]), sys.argv[2]
maps = []
for line in open(f"/proc/{pid}/maps"):
    parts = line.split()
    if len(parts) >= 6 and parts[5] == exe:
        s, e = (int(x, 16) for x in parts[0].split("-"))
        maps.append((s, e, int(parts[2], 16), parts[1]))
pm = open(f"/proc/{pid}/pagemap", "rb")
present = []  # file offsets of resident pages
for s, e, off, perm in maps:
    pm.seek(s // 4096 * 8)
    data = pm.read((e - s) // 4096 * 8)
    for i in range((e - s) // 4096):
        (v,) = struct.unpack_from("<Q", data, i * 8)
        if v >> 63 & 1:
            present.append((off + i * 4096, perm, (v >> 61) & 1))
# sections: name, file offset, size
secs = []
for line in subprocess.run(["readelf", "-SW", exe], capture_output=True, text=True).stdout.splitlines():
    m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
    if m:
        secs.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4), 16)))
bysec = collections.Counter()
text = [s for s in secs if s[0] == ".text"][0]
tpages = []
for off, perm, anon in present:
    name = "?"
    for n, addr, foff, size in secs:
        if foff <= off < foff + max(size, 1) and n != ".tbss":
            name = n; break
    bysec[(name, "anon" if anon == 0 else "file")] += 4
    if name == ".text":
        tpages.append(text[1] + off - text[2])
print("resident KB by section:")
for k, v in bysec.most_common(12): print(f"  {v:7d} {k}")
# symbols -> crates for .text pages
syms = []
out = subprocess.run(["nm", "-C", "--defined-only", exe], capture_output=True, text=True).stdout
for line in out.splitlines():
    p = line.split(" ", 2)
    if len(p) == 3 and p[1] in "tT":
        syms.append((int(p[0], 16), p[2]))
syms.sort()
addrs = [a for a, _ in syms]
def crate(name):
    name = re.sub(r"^<", "", name)
    m = re.match(r"(?:impl )?([A-Za-z_][A-Za-z0-9_]*)::", name)
    return m.group(1) if m else "(other)"
bycrate = collections.Counter()
for p in tpages:
    # count each symbol overlapping the page, weighted by first symbol
    i = bisect.bisect_right(addrs, p) - 1
    bycrate[crate(syms[i][1]) if i >= 0 else "?"] += 4
print("resident .text KB by crate (first symbol of each page):")
for k, v in bycrate.most_common(25): print(f"  {v:7d} {k}")
