// Package simulate makes a corpus of realistic user files and runs
// ransomware-like behaviour profiles against it, for tests and drills.
//
// It refuses to touch anything but a corpus it generated itself: the
// corpus folder carries a marker file with the manifest of every file it
// made, and profiles only touch files named in that manifest. It never
// uses the network and never spreads.
package simulate
