"""Random test inputs (hex, one per line) over many scripts, combining marks,
contractions and trailing spaces; a quarter of them start with a contraction's
first letter followed by contraction letters and marks in any order, to
exercise matching across marks. Usage: inputs.py COUNT SEED contractions.txt ccc.txt"""
import random, sys
random.seed(int(sys.argv[2]))
N=int(sys.argv[1])
contr=[]
for line in open(sys.argv[3]):
    l,_=line.split(';'); contr.append(''.join(chr(int(x,16)) for x in l.split()))
ranges=[(0x20,0x7e),(0x09,0x0d),(0xa0,0x24f),(0x300,0x36f),(0x370,0x3ff),(0x400,0x52f),(0x590,0x5ff),(0x600,0x6ff),
(0x900,0x97f),(0xb80,0xbff),(0xd80,0xdff),(0xe00,0xe7f),(0xe80,0xeff),(0xf00,0xfff),(0x1000,0x109f),(0x1100,0x11ff),
(0x1e00,0x1eff),(0x2000,0x206f),(0x20a0,0x20cf),(0x2460,0x24ff),(0x3040,0x30ff),(0x3200,0x33ff),(0x4e00,0x9fff),(0xac00,0xd7a3),
(0xf900,0xfaff),(0xfb00,0xfdff),(0xfe00,0xfe6f),(0xff00,0xffef),(0x10000,0x1007f),(0x1d400,0x1d7ff),(0x1f300,0x1f6ff),(0x20000,0x2a6df),
(0x2b740,0x2b81f),(0xe000,0xe0ff),(0xfff0,0xffff),(0xe0000,0xe01ef),(0x10ff00,0x10ffff),(0x30000,0x3ffff)]
def rc():
    a,b=random.choice(ranges)
    while True:
        c=random.randint(a,b)
        if not (0xd800<=c<=0xdfff): return chr(c)
suffix=sorted({c for l in open(sys.argv[3]) for c in [int(x,16) for x in l.split(';')[0].split()][1:]})
initials=sorted({int(l.split()[0],16) for l in open(sys.argv[3])})
marks=[int(l.split()[0],16) for l in open(sys.argv[4]) if int(l.split()[1],16)]
def adversarial():
    s=[random.choice(initials)]
    for _ in range(random.randint(1,6)):
        r=random.random()
        s.append(random.choice(suffix) if r<0.5 else random.choice(marks) if r<0.9 else random.choice(initials))
    return ''.join(chr(x) for x in s)
out=[]
for i in range(N):
    if i % 4 == 3:
        out.append(adversarial().encode().hex())
        continue
    n=random.choice([1,1,2,3,4,6,10,20])
    s=''
    for _ in range(n):
        r=random.random()
        if r<0.15: s+=random.choice(contr)
        elif r<0.25: s+=random.choice('aeiouAEIOU')+chr(random.randint(0x300,0x36f))
        elif r<0.3: s+=' '
        else: s+=rc()
    if random.random()<0.1: s+='   '
    out.append(s.encode().hex())
print('\n'.join(out))
