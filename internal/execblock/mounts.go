package execblock

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// localTypes are the filesystems whose executions are watched by default:
// those a program can be run from and whose reads cannot hang on a
// network. (A network filesystem can be named in Config.Mounts.)
var localTypes = map[string]bool{
	"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true, "f2fs": true, "zfs": true,
	"tmpfs": true, "overlay": true, "vfat": true, "exfat": true, "ntfs": true, "ntfs3": true, "fuseblk": true,
	"squashfs": true, "erofs": true, "iso9660": true, "udf": true, "ramfs": true,
}

// mount is one line of /proc/self/mountinfo that matters here.
type mount struct {
	dev    string // major:minor, the same for every mount of one filesystem
	point  string
	fstype string
}

// localMounts lists one mount point per local filesystem.
func localMounts(mountinfo string) ([]string, error) {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range parseMountinfo(b) {
		if localTypes[m.fstype] && !seen[m.dev] {
			seen[m.dev] = true
			out = append(out, m.point)
		}
	}
	return out, nil
}

// parseMountinfo reads the format of proc(5); malformed lines are skipped.
func parseMountinfo(b []byte) []mount {
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) {
			continue
		}
		out = append(out, mount{dev: f[2], point: unescapeOctal(f[4]), fstype: f[sep+1]})
	}
	return out
}

// unescapeOctal undoes the kernel's \ooo escapes of space, tab, newline
// and backslash in mount points.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
