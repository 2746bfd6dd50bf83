// Package nft applies nftables scripts with the nft command, one atomic
// transaction per script. The isolation of a host and the cut-off of a
// file-server client are both written as such scripts.
package nft
