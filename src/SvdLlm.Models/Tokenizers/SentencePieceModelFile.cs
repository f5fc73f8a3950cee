using System.Text;

namespace SvdLlm.Models.Tokenizers;

/// <summary>The type of a SentencePiece piece (sentencepiece_model.proto, <c>SentencePiece.Type</c>).</summary>
internal enum SentencePieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 }

/// <summary>One entry of <c>ModelProto.pieces</c>; its id is its index.</summary>
internal readonly record struct SentencePieceEntry(string Piece, float Score, SentencePieceType Type);

/// <summary>
/// The parts of a SentencePiece <c>ModelProto</c> (a tokenizer.model file) that encoding and
/// decoding depend on, with the proto2 defaults for absent fields.
/// </summary>
internal sealed record SentencePieceModelFile(
    string Path,
    IReadOnlyList<SentencePieceEntry> Pieces,
    int ModelType,
    bool ByteFallback,
    bool TreatWhitespaceAsSuffix,
    int UnkId,
    int BosId,
    int EosId,
    int PadId,
    string NormalizerName,
    int PrecompiledCharsmapLength,
    bool AddDummyPrefix,
    bool RemoveExtraWhitespaces,
    bool EscapeWhitespaces)
{
    public const int Unigram = 1, Bpe = 2, Word = 3, Char = 4;

    /// <summary>
    /// Reads a serialized <c>sentencepiece.ModelProto</c>. Field numbers are those of
    /// sentencepiece_model.proto: ModelProto {1 pieces, 2 trainer_spec, 3 normalizer_spec};
    /// SentencePiece {1 piece, 2 score, 3 type}; TrainerSpec {3 model_type, 24
    /// treat_whitespace_as_suffix, 35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id};
    /// NormalizerSpec {1 name, 2 precompiled_charsmap, 3 add_dummy_prefix, 4
    /// remove_extra_whitespaces, 5 escape_whitespaces}. Other fields are skipped.
    /// </summary>
    /// <exception cref="TokenizerFormatException">The file is not a well-formed ModelProto; the message names the field.</exception>
    public static SentencePieceModelFile Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (IOException e)
        {
            throw new TokenizerFormatException(path, null, $"cannot be read: {e.Message}", e);
        }
        var pieces = new List<SentencePieceEntry>();
        int modelType = Unigram, unkId = 0, bosId = 1, eosId = 2, padId = -1;
        bool byteFallback = false, suffix = false;
        string normalizerName = "";
        int charsmapLength = 0;
        bool addDummyPrefix = true, removeExtra = true, escape = true;
        bool sawTrainerSpec = false;

        var root = new ProtoReader(path, bytes, 0, bytes.Length, "ModelProto");
        while (root.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1:
                {
                    string at = $"pieces[{pieces.Count}]";
                    ProtoReader p = root.Message(wire, at);
                    string? piece = null;
                    float score = 0;
                    int type = (int)SentencePieceType.Normal;
                    while (p.Next(out int f, out int w))
                    {
                        switch (f)
                        {
                            case 1: piece = p.String(w, $"{at}.piece"); break;
                            case 2: score = p.Float(w, $"{at}.score"); break;
                            case 3: type = (int)p.Varint(w, $"{at}.type"); break;
                            default: p.Skip(w, $"{at} field {f}"); break;
                        }
                    }
                    if (string.IsNullOrEmpty(piece)) throw new TokenizerFormatException(path, $"{at}.piece", "missing or empty: every piece needs its text");
                    if (!Enum.IsDefined((SentencePieceType)type))
                        throw new TokenizerFormatException(path, $"{at}.type", $"unknown piece type {type} (expected 1 NORMAL .. 6 BYTE)");
                    pieces.Add(new SentencePieceEntry(piece, score, (SentencePieceType)type));
                    break;
                }
                case 2:
                {
                    sawTrainerSpec = true;
                    ProtoReader t = root.Message(wire, "trainer_spec");
                    while (t.Next(out int f, out int w))
                    {
                        switch (f)
                        {
                            case 3: modelType = (int)t.Varint(w, "trainer_spec.model_type"); break;
                            case 24: suffix = t.Varint(w, "trainer_spec.treat_whitespace_as_suffix") != 0; break;
                            case 35: byteFallback = t.Varint(w, "trainer_spec.byte_fallback") != 0; break;
                            case 40: unkId = (int)t.Varint(w, "trainer_spec.unk_id"); break;
                            case 41: bosId = (int)t.Varint(w, "trainer_spec.bos_id"); break;
                            case 42: eosId = (int)t.Varint(w, "trainer_spec.eos_id"); break;
                            case 43: padId = (int)t.Varint(w, "trainer_spec.pad_id"); break;
                            default: t.Skip(w, $"trainer_spec field {f}"); break;
                        }
                    }
                    break;
                }
                case 3:
                {
                    ProtoReader n = root.Message(wire, "normalizer_spec");
                    while (n.Next(out int f, out int w))
                    {
                        switch (f)
                        {
                            case 1: normalizerName = n.String(w, "normalizer_spec.name"); break;
                            case 2: charsmapLength = n.Bytes(w, "normalizer_spec.precompiled_charsmap").Length; break;
                            case 3: addDummyPrefix = n.Varint(w, "normalizer_spec.add_dummy_prefix") != 0; break;
                            case 4: removeExtra = n.Varint(w, "normalizer_spec.remove_extra_whitespaces") != 0; break;
                            case 5: escape = n.Varint(w, "normalizer_spec.escape_whitespaces") != 0; break;
                            default: n.Skip(w, $"normalizer_spec field {f}"); break;
                        }
                    }
                    break;
                }
                default:
                    root.Skip(wire, $"ModelProto field {field}");
                    break;
            }
        }
        if (pieces.Count == 0)
            throw new TokenizerFormatException(path, "pieces", bytes.Length == 0 ? "the file is empty" : "no pieces: not a SentencePiece model");
        if (!sawTrainerSpec)
            throw new TokenizerFormatException(path, "trainer_spec", "missing: the model type and special ids cannot be known");
        return new SentencePieceModelFile(path, pieces, modelType, byteFallback, suffix, unkId, bosId, eosId, padId,
            normalizerName, charsmapLength, addDummyPrefix, removeExtra, escape);
    }

    /// <summary>
    /// A protobuf wire-format reader over one message's bytes: varint (0), 64-bit (1),
    /// length-delimited (2) and 32-bit (5) fields; groups (3, 4) are refused.
    /// </summary>
    private sealed class ProtoReader(string path, byte[] data, int start, int end, string message)
    {
        private int _position = start;

        /// <summary>Reads the next field key; false at the end of the message.</summary>
        public bool Next(out int field, out int wire)
        {
            if (_position >= end)
            {
                field = wire = 0;
                return false;
            }
            ulong key = ReadVarint($"{message} field key at byte {_position}");
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field <= 0 || key >> 3 > int.MaxValue)
                throw new TokenizerFormatException(path, message, $"invalid field number {key >> 3} at byte {_position}: not a SentencePiece model (or a corrupt one)");
            return true;
        }

        public ProtoReader Message(int wire, string at)
        {
            var (offset, length) = LengthDelimited(wire, at);
            return new ProtoReader(path, data, offset, offset + length, at);
        }

        public string String(int wire, string at)
        {
            var (offset, length) = LengthDelimited(wire, at);
            try
            {
                return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(data, offset, length);
            }
            catch (DecoderFallbackException)
            {
                throw new TokenizerFormatException(path, at, "expected UTF-8 text, found invalid UTF-8 bytes");
            }
        }

        public byte[] Bytes(int wire, string at)
        {
            var (offset, length) = LengthDelimited(wire, at);
            return data.AsSpan(offset, length).ToArray();
        }

        public long Varint(int wire, string at)
        {
            if (wire != 0) throw new TokenizerFormatException(path, at, $"expected a varint (wire type 0), found wire type {wire}");
            return (long)ReadVarint(at);
        }

        public float Float(int wire, string at)
        {
            if (wire != 5) throw new TokenizerFormatException(path, at, $"expected a 32-bit float (wire type 5), found wire type {wire}");
            Require(4, at);
            float value = BitConverter.ToSingle(data, _position);
            _position += 4;
            return value;
        }

        public void Skip(int wire, string at)
        {
            switch (wire)
            {
                case 0: ReadVarint(at); break;
                case 1: Require(8, at); _position += 8; break;
                case 2: LengthDelimited(wire, at); break;
                case 5: Require(4, at); _position += 4; break;
                default: throw new TokenizerFormatException(path, at, $"unsupported wire type {wire} (groups are not used by SentencePiece): not a SentencePiece model (or a corrupt one)");
            }
        }

        private (int Offset, int Length) LengthDelimited(int wire, string at)
        {
            if (wire != 2) throw new TokenizerFormatException(path, at, $"expected a length-delimited field (wire type 2), found wire type {wire}");
            ulong length = ReadVarint(at);
            if (length > (ulong)(end - _position))
                throw new TokenizerFormatException(path, at, $"truncated: declares {length} bytes but only {end - _position} remain in {message}");
            int offset = _position;
            _position += (int)length;
            return (offset, (int)length);
        }

        private ulong ReadVarint(string at)
        {
            ulong value = 0;
            for (int shift = 0; shift < 70; shift += 7)
            {
                if (_position >= end) throw new TokenizerFormatException(path, at, $"truncated: the file ends inside a varint of {message}");
                byte b = data[_position++];
                if (shift == 63 && b > 1) break;
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return value;
            }
            throw new TokenizerFormatException(path, at, "malformed varint (longer than 10 bytes)");
        }

        private void Require(int count, string at)
        {
            if (end - _position < count) throw new TokenizerFormatException(path, at, $"truncated: needs {count} bytes, only {end - _position} remain in {message}");
        }
    }
}
