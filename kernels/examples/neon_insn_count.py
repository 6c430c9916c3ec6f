# Counts the instructions a NEON packed tile function executes under qemu:
#   python3 neon_insn_count.py BINARY QEMU_CPU TYPE TIER NT FUNCTION
# e.g. BINARY=target/cross/aarch64-unknown-linux-gnu/release/examples/neon_insn_count
#      (../shared/tools/aarch64.sh build -p phi-kernels --release --example neon_insn_count),
#      max Q4_K Dotprod 1 sdot::q4_k_n. qemu prints sdot/smmla as ".byte".
import re,sys,subprocess,tempfile,os
B, cpu, ty, tier, nt, fn = sys.argv[1:7]
nm = subprocess.run(["aarch64-linux-gnu-nm","-C","-S",B],capture_output=True,text=True).stdout
lo=hi=None
for l in nm.splitlines():
    if l.endswith("packed_neon_k::"+fn):
        a,sz=l.split()[:2]; lo=int(a,16); hi=lo+int(sz,16)
log=os.path.join(tempfile.mkdtemp(),"trace.log")
subprocess.run(["qemu-aarch64","-cpu",cpu,"-d","in_asm,exec,nochain","-D",log,B,ty,tier,nt],capture_output=True,check=True)
tb={}; cur=None; execs=[]
for l in open(log,errors="replace"):
    if l.startswith("IN:"):
        cur=None; continue
    m=re.match(r"0x([0-9a-f]+):\s+[0-9a-f]+\s+(\S+)",l)
    if m:
        pc=int(m.group(1),16)
        if cur is None:
            cur=pc; tb[cur]=[]
        tb[cur].append(m.group(2)); continue
    if l.startswith("Trace"):
        cur=None
        m=re.search(r"\[[0-9a-f]+/([0-9a-f]+)/",l)
        if m: execs.append(int(m.group(1),16))
    else:
        cur=None if l.strip()=="" else cur
tot=0; cls={}
for pc in execs:
    if lo<=pc<hi and pc in tb:
        for ins in tb[pc]:
            tot+=1; cls[ins]=cls.get(ins,0)+1
per=tot/(2*16*int(nt))
top=sorted(cls.items(),key=lambda x:-x[1])[:8]
print(f"{ty} {tier} nt={nt}: {tot} insns in {fn}, {per:.1f} per super-block·row·token; top: "+", ".join(f"{k}={v}" for k,v in top))
