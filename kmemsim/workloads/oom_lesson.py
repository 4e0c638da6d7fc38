'''The lesson behind ``kmemsim shell --lesson``: the article's whole story at a prompt.

A small server (``mem=128M``: 64 MB for programs) runs mysqld, a Python web
app and nginx.  A driver module, ``slow_leak``, loses 32 KB a second.  The
lesson watches ``/proc/meminfo`` fall, sees the OOM killer kill mysqld
without the memory coming back for long, notices that ``Slab`` only grows,
and then asks kmemleak, which names the function and the line.

The script is plain shell: every line can be typed at ``kmemsim shell``.

>>> LESSON_SCRIPT.splitlines()[0].startswith("#")
True
'''

#: The kernel command line of the lesson's machine.
LESSON_CMDLINE = "mem=128M"

#: MemFree, MemAvailable, Cached, Slab and SUnreclaim: the lines the article watches.
_WATCHED = "grep -E '^(MemFree|MemAvailable|Cached|Slab|SUnreclaim):' /proc/meminfo"

LESSON_SCRIPT = f"""\
# == 1. A server that slowly runs out of memory ==
# A small server: 128 MB of RAM, 64 MB of it for programs. It runs mysqld, a
# Python web app and nginx. Right after boot, memory looks healthy:
free -m
{_WATCHED}
# A new driver was installed yesterday. Its module is loaded:
modprobe slow_leak size=4096 count=8
dmesg | tail -n 1
# Now watch memory for 20 minutes, one sample every two minutes.
watch -n 120 --count 11 "{_WATCHED}"
# MemFree fell, then the page cache (Cached) was reclaimed to make room, and
# then MemFree jumped back up: something was killed. The kernel log says who:
dmesg | grep -E 'invoked oom-killer|Out of memory|oom_reaper'
# The OOM killer chose mysqld by its badness (resident memory plus page
# tables, adjusted by oom_score_adj). mysqld even "invoked" it: its page
# fault was the allocation that found no memory left. The report lists the
# processes the killer considered:
dmesg | grep -A 10 'Tasks state'
# Killing mysqld gave back mysqld's memory, not what was lost: the leak went on
# eating it. Five minutes on, the OOM killer has been busy:
sleep 300
dmesg | grep 'Killed process'
free -m
{_WATCHED}
# Slab only grows and never shrinks: that memory belongs to the kernel, and no
# process can give it back. Which slab cache is it?
grep -E '^(# name|kmalloc-4k )' /proc/slabinfo
# A kernel leak. The kernel was built with CONFIG_DEBUG_KMEMLEAK, and its scan
# thread (every 10 minutes) has been complaining all along:
dmesg | grep kmemleak
# == 2. kmemleak finds the culprit ==
# Scan now, wait, scan again (the first scan of a changed object only records
# its checksum), then read the records:
echo scan > /sys/kernel/debug/kmemleak
sleep 5
echo scan > /sys/kernel/debug/kmemleak
grep -c 'unreferenced object' /sys/kernel/debug/kmemleak
head -n 16 /sys/kernel/debug/kmemleak
# The second line of the backtrace is the function that allocated, in module
# slow_leak. addr2line maps it back to the source line:
grep -m 1 -o 'leak_thread+[0-9a-fx/]*' /sys/kernel/debug/kmemleak | xargs addr2line -f -e slow_leak.ko
# And the ground truth agrees (kmemsim knows what the program meant):
grep -m 1 -o 'object 0x[0-9a-f]*' /sys/kernel/debug/kmemleak | grep -o '0x[0-9a-f]*' | xargs explain
# Unloading the module stops the leak; what it leaked stays leaked until reboot.
rmmod slow_leak
dmesg | tail -n 1
"""
