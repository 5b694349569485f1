# Class-guided editing, measured: N real MNIST test digits (`cm data`, 16 px), a region of each filled in as
# each of the ten classes by a class-conditional consistency model (`cm edit inpaint --class each`); the
# dataset's LeNet (classifiers/mnist-16) reads each result. Prints the share read as the class asked, per
# region (chance: 10 %). Run from the repository root:
#   python3 scripts/class_edit.py target/release/cm www/models/mnist-sct-cond 100
# Python's standard library only (the PNGs are written by hand).
import json, os, struct, subprocess, sys, tempfile, zlib
CM, MODEL = sys.argv[1], sys.argv[2]
N = int(sys.argv[3])
TMP = tempfile.mkdtemp(prefix='cm-class-edit-')
at = lambda name: os.path.join(TMP, name)
subprocess.run([CM, 'data', '--name', 'mnist', '--resolution', '16', '--n', str(N), '--seed', '0', '--out', at('d.npy')], check=True, capture_output=True)
raw = open(at('d.npy'), 'rb').read()
h = struct.unpack('<H', raw[8:10])[0]
vals = struct.unpack(f'<{(len(raw) - 10 - h) // 4}f', raw[10 + h:])
def png(path, pix):
    rows = b''.join(b'\x00' + bytes(pix[y * 16:(y + 1) * 16]) for y in range(16))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 16, 16, 8, 0, 0, 0, 0))
                           + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))
masks = {'lower half': lambda y, x: y >= 8, 'upper half': lambda y, x: y < 8, 'right half': lambda y, x: x >= 8,
         'centre 8x8': lambda y, x: 4 <= y < 12 and 4 <= x < 12}
out = {}
for name, f in masks.items():
    png(at('mask.png'), [255 if f(y, x) else 0 for y in range(16) for x in range(16)])
    hits = total = 0
    for i in range(N):
        img = [max(0, min(255, round((v + 1) * 127.5))) for v in vals[i * 256:(i + 1) * 256]]
        png(at('in.png'), img)
        r = subprocess.run([CM, 'edit', 'inpaint', '--model', MODEL, '--input', at('in.png'), '--mask', at('mask.png'),
                            '--class', 'each', '--n', '10', '--seed', str(i), '--classifier', 'classifiers/mnist-16',
                            '--out', at('o.npy')], check=True, capture_output=True, text=True)
        rep = json.loads(r.stdout)
        hits += round(rep['class_accuracy'] * 10); total += 10
    out[name] = {'results': total, 'class_accuracy': hits / total}
    print(name, out[name], flush=True)
print(json.dumps(out))
