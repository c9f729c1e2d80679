#!/bin/busybox sh
# PID 1 of an `fpsim-harness vm` guest (tools/harness/vm_guest.cpp builds the initramfs around it).
# ttyS0 carries the kernel's messages; ttyS1 only the harness's output, between two lines the host
# reads: "FPSIM-VM-INIT <uptime>" when init starts and "FPSIM-VM-EXIT <status> <uptime>" at the end.
# Whatever happens, the guest powers off (or panics, and qemu's -no-reboot ends it).
/bin/busybox mount -t devtmpfs devtmpfs /dev
# The kernel found no /dev/console in the initramfs (none is packed: building one needs mknod).
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# The harness works in a tmpfs on /tmp, as on a host. The traces and the working directory travel
# at their host paths, which may be under /tmp themselves: what the initramfs has there is bound
# back into the tmpfs.
mv /tmp /.initramfs-tmp 2>/dev/null || mkdir /.initramfs-tmp
mkdir /tmp
mount -t tmpfs tmpfs /tmp
for e in /.initramfs-tmp/* /.initramfs-tmp/.[!.]*; do
  [ -e "$e" ] || continue
  n=/tmp/${e##*/}
  if [ -d "$e" ]; then mkdir "$n"; else touch "$n"; fi
  mount --bind "$e" "$n"
done
out=/dev/ttyS1
# Raw: no \n -> \r\n, so the host gets the harness's bytes as they are.
stty -F $out raw -echo
read up _ </proc/uptime
echo "FPSIM-VM-INIT $up" >$out
if [ -f /fuse.ko ]; then
  insmod /fuse.ko || echo "fpsim-harness vm: insmod fuse.ko failed" >$out
fi
mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null
# /fpsim/args: the working directory, then one argument a line.
{
  read -r cwd
  set --
  while IFS= read -r a; do set -- "$@" "$a"; done
} </fpsim/args
cd "$cwd" && /bin/fpsim-harness "$@" >$out 2>&1
rc=$?
read up _ </proc/uptime
echo "FPSIM-VM-EXIT $rc $up" >$out
poweroff -f
