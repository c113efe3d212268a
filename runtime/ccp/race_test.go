//go:build race

package ccp

func init() { churnRounds = 10 }
