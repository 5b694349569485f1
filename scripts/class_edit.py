# Class-guided editing, measured: N real test images of the model's dataset (`cm data`, grey, at the model's
# resolution), a region of each filled in as each of its classes by a class-conditional consistency model
# (`cm edit inpaint --class each`); the dataset's LeNet (classifiers/<dataset>-<px>) reads each result.
# Prints the share read as the class asked, per region (chance: one over the classes). Run from the
# repository root:
#   python3 scripts/class_edit.py target/release/cm www/models/mnist-sct-cond 100
#   python3 scripts/class_edit.py target/release/cm www/models/fashion-mnist-sct-cond 100
# Python's standard library only (the PNGs are written by hand).
import json, os, struct, subprocess, sys, tempfile, zlib
CM, MODEL = sys.argv[1], sys.argv[2]
N = int(sys.argv[3])
CARD = json.load(open(os.path.join(MODEL, 'config.json')))
NET = CARD['model']['architecture']
DATASET, R, K = CARD['dataset'], NET.get('resolution'), NET.get('classes', 0)
if NET.get('kind') != 'unet' or NET.get('channels') != 1 or K < 2:
    sys.exit(f'{MODEL}: expected a grey class-conditional image model (a U-Net of 1 channel with classes), '
             f'found a {NET.get("kind")} of {NET.get("channels")} channels and {K} classes')
CLASSIFIER = f'classifiers/{DATASET}-{R}'
if not os.path.isfile(os.path.join(CLASSIFIER, 'classifier.json')):
    sys.exit(f'{CLASSIFIER}: no classifier for {DATASET} at {R} px (train one with `cm classifier`)')
TMP = tempfile.mkdtemp(prefix='cm-class-edit-')
at = lambda name: os.path.join(TMP, name)
subprocess.run([CM, 'data', '--name', DATASET, '--resolution', str(R), '--n', str(N), '--seed', '0', '--out', at('d.npy')], check=True, capture_output=True)
raw = open(at('d.npy'), 'rb').read()
h = struct.unpack('<H', raw[8:10])[0]
vals = struct.unpack(f'<{(len(raw) - 10 - h) // 4}f', raw[10 + h:])
def png(path, pix):
    rows = b''.join(b'\x00' + bytes(pix[y * R:(y + 1) * R]) for y in range(R))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    open(path, 'wb').write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', R, R, 8, 0, 0, 0, 0))
                           + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))
H, Q = R // 2, R // 4
masks = {'lower half': lambda y, x: y >= H, 'upper half': lambda y, x: y < H, 'right half': lambda y, x: x >= H,
         f'centre {H}x{H}': lambda y, x: Q <= y < Q + H and Q <= x < Q + H}
out = {}
for name, f in masks.items():
    png(at('mask.png'), [255 if f(y, x) else 0 for y in range(R) for x in range(R)])
    hits = total = 0
    for i in range(N):
        img = [max(0, min(255, round((v + 1) * 127.5))) for v in vals[i * R * R:(i + 1) * R * R]]
        png(at('in.png'), img)
        r = subprocess.run([CM, 'edit', 'inpaint', '--model', MODEL, '--input', at('in.png'), '--mask', at('mask.png'),
                            '--class', 'each', '--n', str(K), '--seed', str(i), '--classifier', CLASSIFIER,
                            '--out', at('o.npy')], check=True, capture_output=True, text=True)
        rep = json.loads(r.stdout)
        hits += round(rep['class_accuracy'] * K); total += K
    out[name] = {'results': total, 'class_accuracy': hits / total}
    print(name, out[name], flush=True)
print(json.dumps(out))
