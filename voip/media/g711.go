package media

// G.711 encoders (ITU-T G.711): PCMU (mu-law) and PCMA (A-law) are table-free
// bit manipulations of 16-bit linear samples.

const muLawBias = 0x84

// linearToMuLaw encodes one 16-bit sample as mu-law.
func linearToMuLaw(sample int16) byte {
	s := int32(sample)
	sign := byte(0)
	if s < 0 {
		s = -s
		sign = 0x80
	}
	s = min(s+muLawBias, 0x7fff)
	exponent := byte(7)
	for mask := int32(0x4000); s&mask == 0 && exponent > 0; mask >>= 1 {
		exponent--
	}
	mantissa := byte(s>>(exponent+3)) & 0x0f
	return ^(sign | exponent<<4 | mantissa)
}

// linearToALaw encodes one 16-bit sample as A-law.
func linearToALaw(sample int16) byte {
	s := int32(sample) >> 3 // A-law works on 13 bits
	sign := byte(0x80)
	if s < 0 {
		s = -s - 1
		sign = 0
	}
	var out byte
	if s < 32 {
		out = byte(s >> 1)
	} else {
		exponent := byte(1)
		for t := s >> 5; t > 1 && exponent < 7; t >>= 1 {
			exponent++
		}
		out = exponent<<4 | byte(s>>exponent)&0x0f
	}
	return (out | sign) ^ 0x55
}
