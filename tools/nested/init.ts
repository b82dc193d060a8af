// /init of the nested accelerator's initramfs: load KVM and the virtio
// drivers, mount the host's root over 9p, and run the agent chrooted into it,
// so every host path means the same inside. The kernel passes the unknown
// `pvx_*` boot parameters to /init as environment variables.

export const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /host /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "pvx-nested: $*"; poweroff -f; }
while read m params; do insmod /modules/$m.ko $params || fail "insmod $m $params failed"; done < /modules/order
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm_amd: the emulated CPU has no SVM"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 hostroot /host || fail "cannot mount the host's root over 9p"
for d in proc sys dev; do mount -o bind /$d /host/$d || fail "cannot bind /$d"; done
mkdir -p /host/dev/shm && mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm || fail "cannot mount /dev/shm"
port=
for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name)" = pvx.agent ] && port=/dev/\${p##*/}; done
[ -n "$port" ] || fail "no virtio port named pvx.agent"
echo "pvx-nested: starting the agent on $port"
# A virtio port opens once: the agent reads it as stdin and writes it as stdout.
exec 3<>"$port"
chroot /host /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
  DENO_DIR=/dev/shm/deno DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 "$pvx_deno" run -A "$pvx_agent" "$port" <&3 >&3
echo "pvx-nested: the agent ended with status $?"
poweroff -f
`;
